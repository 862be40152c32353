"""Files that are written whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["write_atomically"]


def write_atomically(path: Path, data: str | bytes) -> None:
    """Writes `data` to `path` through a temporary file beside it that is
    renamed when complete, so a reader (jaxrl.watch, an uploader) or a kill
    never sees half a file and the previous content survives a failure. On
    failure (a full disk) the temporary file is removed and the OSError raised.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise

"""Files that are written whole or not at all, and JSON lines read back
whatever a kill left of them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["read_jsonl", "write_atomically"]


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


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file (metrics.jsonl), in order. A
    process killed mid-write leaves a torn last line: it and any other line
    that is not a whole JSON object are skipped, the rest is good."""
    records = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                records.append(record)
    return records

"""Command-line entry point: `python -m jaxrl.train [key=value ...]`.

Composes the Hydra config, validates it, makes the run folder, trains, and
leaves config.yaml, metrics.jsonl, summary.json and the policy there.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from jaxrl.config import ConfigError, RunConfig, from_dict


def make_run_dir(run: RunConfig) -> Path:
    """The run folder: `run_dir` if given, else `<runs_root>/<time>-<algo>-<env>`."""
    if run.run_dir:
        path = Path(run.run_dir)
    else:
        path = Path(run.runs_root) / f"{time.strftime('%Y%m%d-%H%M%S')}-{run.algo_name}-{run.env.id}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def make_sinks(run: RunConfig) -> list[Any]:
    """Console and metrics.jsonl always; wandb when `logger.backend=wandb`."""
    from jaxrl.sinks.console import ConsoleSink
    from jaxrl.sinks.jsonl import JsonlSink

    return [ConsoleSink(), JsonlSink()]


def run_from_config(cfg: DictConfig) -> dict[str, Any]:
    """Validates `cfg`, trains, and returns the summary."""
    from jaxrl.runner import train

    resolved = OmegaConf.to_container(cfg, resolve=True)
    run = from_dict(resolved)
    run_dir = make_run_dir(run)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    return train(run, run_dir, make_sinks(run), resolved)


@hydra.main(config_path="pkg://jaxrl.configs", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    """Hydra's entry point; bad configuration exits with status 2 and a one-line reason."""
    try:
        run_from_config(cfg)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()

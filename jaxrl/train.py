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


def run_dir_for(run: RunConfig) -> Path:
    """The run folder: `run_dir` if given, else a new `<runs_root>/<time>-<algo>-<env>`
    (with a numbered suffix when a run started in the same second)."""
    if run.run_dir:
        return Path(run.run_dir)
    base = Path(run.runs_root) / f"{time.strftime('%Y%m%d-%H%M%S')}-{run.algo_name}-{run.env.id}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def run_from_config(cfg: DictConfig) -> dict[str, Any]:
    """Validates `cfg`, trains, and returns the summary."""
    from jaxrl.runner import train
    from jaxrl.sinks import make_sinks

    resolved = OmegaConf.to_container(cfg, resolve=True)
    run = from_dict(resolved)
    return train(run, run_dir_for(run), make_sinks(run), resolved)


def open_sweep_keys(overrides: list[str]) -> list[str]:
    """Rewrites `sweep.algo.<name>=...` as `++sweep.algo.<name>=...`.

    Hydra only overrides keys that exist in the config, and sweep keys are
    open-ended (any traced hyperparameter of the chosen algorithm, checked by
    `jaxrl.config`), so they are passed as add-or-override.
    """
    return [f"++{arg}" if arg.startswith("sweep.") else arg for arg in overrides]


@hydra.main(config_path="pkg://jaxrl.configs", config_name="config", version_base=None)
def hydra_main(cfg: DictConfig) -> None:
    """Hydra's entry point; bad configuration exits with status 2 and a one-line reason."""
    try:
        run_from_config(cfg)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def main() -> None:
    """`python -m jaxrl.train [key=value ...]`."""
    sys.argv[1:] = open_sweep_keys(sys.argv[1:])
    hydra_main()


if __name__ == "__main__":
    main()

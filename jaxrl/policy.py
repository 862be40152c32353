"""`load_policy(run_dir)`: a trained policy as a plain NumPy callable; `film_policy(run_dir)`: its video."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import yaml

from jaxrl.algos.base import Algorithm, hyperparams
from jaxrl.checkpoint import Checkpointer
from jaxrl.config import RunConfig, from_dict
from jaxrl.envs.base import scale_action
from jaxrl.outputs import POLICY_FILE, deterministic_policy
from jaxrl.runner import build

if TYPE_CHECKING:
    from jaxrl.video import VideoResult


def load_policy(
    run_dir: str | Path, seed: int = 0, member: int | None = None, step: int | None = None
) -> Callable[[np.ndarray], np.ndarray]:
    """Loads the deterministic policy of one trained member of a run.

    Picks the member by `seed` (the first member with that seed), or by index
    with `member` (useful in a sweep). By default the policy of the run's
    last evaluation (policy.msgpack); with `step`, the policy in the
    checkpoint taken at that env step (`checkpoints/<step>`). The returned callable maps a NumPy
    observation [*obs_shape] (or a batch [N, *obs_shape]) to the env's action
    in its own bounds ([action_dim] floats, or a 0-d int array for discrete envs),
    applying the saved observation normalisation. It needs no training code
    path: only the run's config.yaml and policy file.

    Raises FileNotFoundError for a folder without those files, ValueError for
    a policy file that cannot be read; the callable raises ValueError for an
    observation of the wrong shape or with NaN or infinite values.
    """
    _, algo, params = _trained(Path(run_dir), seed, member, step)
    spec = algo.env.spec
    shape = tuple(spec.obs_shape)

    @jax.jit
    def act(obs: jax.Array) -> jax.Array:
        single = lambda o: scale_action(spec, algo.policy(params, o, jax.random.PRNGKey(0), True))
        return jax.vmap(single)(obs) if obs.ndim > len(spec.obs_shape) else single(obs)

    def policy(obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, np.float32)
        if obs.shape != shape and obs.shape[1:] != shape:
            raise ValueError(f"observation of shape {obs.shape}; this policy takes {shape} or a batch (N, *{shape})")
        if not np.isfinite(obs).all():
            raise ValueError("observation holds NaN or infinite values")
        return np.asarray(act(jnp.asarray(obs)))

    return policy


def _trained(run_dir: Path, seed: int, member: int | None, step: int | None) -> tuple[RunConfig, Algorithm, Any]:
    """The run's config, its algorithm (env included) and one member's policy params (see `load_policy`)."""
    for name in ("config.yaml",) if step is not None else ("config.yaml", POLICY_FILE):
        if not (run_dir / name).exists():
            raise FileNotFoundError(f"no {name} in {run_dir}: is it a jaxrl run folder with an evaluated policy?")
    run = from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()))
    members = run.members()
    if member is None:
        matches = [i for i, m in enumerate(members) if m["seed"] == seed]
        if not matches:
            raise ValueError(f"seed {seed} was not trained in {run_dir}; seeds: {sorted({m['seed'] for m in members})}")
        member = matches[0]
    elif not 0 <= member < len(members):
        raise ValueError(f"member {member} out of range; {run_dir} has members 0..{len(members) - 1}")
    if step is None:
        algo, _ = build(run)
        return run, algo, _policy_file_params(run_dir, run, algo, member)
    checkpoints = Checkpointer(run_dir, run.checkpoint)
    # the checkpoint's own sizing: a replay buffer keeps its first session's shape
    algo, _ = build(run, checkpoints.position(step))
    return run, algo, _checkpoint_params(checkpoints, run, algo, member, step)


def film_policy(
    run_dir: str | Path, seed: int = 0, member: int | None = None, step: int | None = None, max_frames: int | None = None
) -> VideoResult:
    """Films one episode of a trained member's deterministic policy into `run_dir/videos/`.

    For runs trained with `video.enabled=false` (a GPU machine without
    OpenGL, say): the video is made later, wherever the run folder is. The
    member and policy are chosen as in `load_policy`; the file is
    `videos/final.mp4`, or `videos/step<step>.mp4` with `step`. max_frames:
    as `video.max_frames` (default: the run's). Returns
    `jaxrl.video.VideoResult` (mp4 path, episode return and length; `reason`
    when the env could not be drawn).
    """
    from jaxrl.video import record_episode

    run_dir = Path(run_dir)
    run, algo, params = _trained(run_dir, seed, member, step)
    return record_episode(
        algo.env, deterministic_policy(algo, params), jax.random.PRNGKey(step or 0), run_dir / "videos",
        "final" if step is None else f"step{step}", max_frames=max_frames or run.video.max_frames,
    )


def _policy_file_params(run_dir: Path, run: RunConfig, algo: Algorithm, member: int) -> Any:
    """Member `member`'s policy params from policy.msgpack ([P] leaves there)."""
    template = jax.eval_shape(lambda k: algo.policy_params(algo.init(k, hyperparams(run.algo))), jax.random.PRNGKey(0))
    try:
        stacked = flax.serialization.msgpack_restore((run_dir / POLICY_FILE).read_bytes())
        return flax.serialization.from_state_dict(template, jax.tree.map(lambda x: x[member], stacked))
    except Exception as err:  # noqa: BLE001 (msgpack and flax raise assorted types for a damaged file)
        raise ValueError(f"cannot read {run_dir / POLICY_FILE} ({type(err).__name__}: {err}); is it truncated?") from None


def _checkpoint_params(checkpoints: Checkpointer, run: RunConfig, algo: Algorithm, member: int, step: int) -> Any:
    """Member `member`'s policy params from the checkpoint at env step `step`."""
    from jaxrl.runner import member_keys, population_hyperparams

    shapes = jax.eval_shape(jax.vmap(algo.init), member_keys(run), population_hyperparams(run))
    restored = checkpoints.restore(shapes, len(run.members()), step)
    return jax.tree.map(lambda x: x[member], algo.policy_params(restored[0]))

"""`load_policy(run_dir)`: a trained policy as a plain NumPy callable; `film_policy(run_dir)`: its video."""

from __future__ import annotations

import numbers
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import yaml

from jaxrl.algos.base import Algorithm, hyperparams
from jaxrl.checkpoint import Checkpointer, newest_checkpoint_step
from jaxrl.config import RunConfig, from_dict
from jaxrl.envs.base import scale_action
from jaxrl.files import folder_path, read_jsonl, read_summary, refuse_multirun_folder
from jaxrl.outputs import POLICY_FILE, deterministic_policy
from jaxrl.runner import build

if TYPE_CHECKING:
    from jaxrl.video import VideoResult


def load_policy(
    run_dir: str | Path, seed: int | None = None, member: int | None = None, step: int | None = None
) -> Callable[[np.ndarray], np.ndarray]:
    """Loads the deterministic policy of one trained member of a run.

    Picks the member by `seed` (the first member with that seed), or by index
    with `member` (useful in a sweep); with neither, member 0 (the first seed,
    whatever the run's `seed=` was). By default the policy of the run's
    last evaluation (policy.msgpack); with `step`, the policy in the
    checkpoint taken at that env step (`checkpoints/<step>`). The returned callable maps a NumPy
    observation [*obs_shape] (or a batch [N, *obs_shape]) to the env's action
    in its own bounds ([action_dim] floats, or a 0-d int array for discrete envs),
    applying the saved observation normalisation. Where jaxrl flattens the
    env's observations (MinAtar's [10, 10, C] images), it also takes them in
    the env's own shape, [10, 10, C] or [N, 10, 10, C]. It needs no training code
    path: only the run's config.yaml and policy file.

    seed, member, step: integers (Python or NumPy; an integral float such as
    the 5.0 a pandas row holds is taken as 5).

    Raises FileNotFoundError for a folder without those files, ValueError for
    an argument that is not an integer or names no member or checkpoint (or
    a `member` not trained with the `seed` given beside it), and
    for a policy file that cannot be read; the callable raises ValueError for
    an observation that is not an array of numbers, of the wrong shape, or
    with NaN or infinite values or values beyond float32's range.
    """
    if seed is None and member is None:
        member = 0  # not seed=0: a run trained with seed=5 has no seed 0
    _, algo, params, _ = _trained(folder_path(run_dir), seed, member, step)
    spec = algo.env.spec
    shape, native = tuple(spec.obs_shape), spec.native_obs_shape

    @jax.jit
    def act(obs: jax.Array) -> jax.Array:
        single = lambda o: scale_action(spec, algo.policy(params, o, jax.random.PRNGKey(0), True))
        return jax.vmap(single)(obs) if obs.ndim > len(spec.obs_shape) else single(obs)

    also = f", or in the env's own shape {native} or (N, *{native})" if native is not None else ""
    takes = f"this policy takes {shape} or a batch (N, *{shape}){also}, arrays of numbers"

    def policy(obs: np.ndarray) -> np.ndarray:
        try:
            raw = np.asarray(obs)
        except (TypeError, ValueError) as err:  # a ragged list, an object NumPy cannot read
            raise ValueError(f"observation {_brief(obs)} is not an array ({err}); {takes}") from None
        if raw.dtype.kind not in "biuf":
            raise ValueError(f"observation {_brief(obs)} holds {raw.dtype} values, not numbers; {takes}")
        if shape not in (raw.shape, raw.shape[1:]):
            if native is None or native not in (raw.shape, raw.shape[1:]):
                raise ValueError(f"observation of shape {raw.shape}; {takes}")
            raw = raw.reshape(*raw.shape[: raw.ndim - len(native)], *shape)
        # checked before the cast: 1e40 is finite, but infinite as float32
        if not np.isfinite(raw).all():
            raise ValueError(f"observation holds NaN or infinite values; {takes}, all finite")
        with np.errstate(over="ignore"):
            obs = raw.astype(np.float32, copy=False)
        if not np.isfinite(obs).all():
            raise ValueError(f"observation holds values beyond float32's range (±3.4e38); {takes}, all within it")
        return np.asarray(act(jnp.asarray(obs)))

    return policy


def _brief(value: Any) -> str:
    """`value` for a message: its repr, cut short, and its type."""
    text = repr(value)
    return f"{text if len(text) <= 40 else text[:37] + '...'} ({type(value).__name__})"


def _integer(name: str, value: Any) -> int | None:
    """`value` as an int: a Python or NumPy integer, or an integral float (a
    pandas row's 5.0); None stays None. Else a ValueError naming `name`."""
    if value is None:
        return None
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and float(value).is_integer():
        return int(value)
    raise ValueError(f"{name}={_brief(value)} is not an integer; {name} takes an integer")


def _trained(
    run_dir: Path, seed: int | None, member: int | None, step: int | None
) -> tuple[RunConfig, Algorithm, Any, int]:
    """The run's config, its algorithm (env included), one member's policy
    params and that member's index (see `load_policy`). With neither `seed`
    nor `member`, the member filmed in training (`video.member`)."""
    seed, member, step = _integer("seed", seed), _integer("member", member), _integer("step", step)
    refuse_multirun_folder(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such folder; give a jaxrl run folder")
    if not (run_dir / "config.yaml").exists():
        raise FileNotFoundError(f"no config.yaml in {run_dir}: is it a jaxrl run folder?")
    if step is None and not (run_dir / POLICY_FILE).exists():
        # a run stopped before its first evaluation still has its checkpoints' policies
        newest = newest_checkpoint_step(run_dir)
        raise FileNotFoundError(
            f"no {POLICY_FILE} in {run_dir}: the run has not evaluated a policy yet"
            + (f"; its newest checkpoint is at step {newest}: give step={newest} (python -m jaxrl.film: --step "
               f"{newest})" if newest is not None else ", and holds no checkpoint")
        )
    run = from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()))
    members = run.members()
    if member is None and seed is None:
        member = run.video.member
    if member is None:
        matches = [i for i, m in enumerate(members) if m["seed"] == seed]
        if not matches:
            raise ValueError(f"seed {seed} was not trained in {run_dir}; seeds: {sorted({m['seed'] for m in members})}")
        member = matches[0]
    elif not 0 <= member < len(members):
        raise ValueError(f"member {member} out of range; {run_dir} has members 0..{len(members) - 1}")
    elif seed is not None and members[member]["seed"] != seed:
        raise ValueError(
            f"member {member} of {run_dir} was trained with seed {members[member]['seed']}, not seed {seed}; "
            "give seed or member alone, or a member trained with that seed"
        )
    if step is None:
        algo, _ = build(run)
        return run, algo, _policy_file_params(run_dir, run, algo, member), member
    checkpoints = Checkpointer(run_dir, run.checkpoint)
    # the checkpoint's own sizing: a replay buffer keeps its first session's shape
    algo, _ = build(run, checkpoints.position(step))
    return run, algo, _checkpoint_params(checkpoints, run, algo, member, step), member


def film_policy(
    run_dir: str | Path,
    seed: int | None = None,
    member: int | None = None,
    step: int | None = None,
    max_frames: int | None = None,
) -> VideoResult:
    """Films one episode of a trained member's deterministic policy into `run_dir/videos/`.

    For runs trained with `video.enabled=false` (a GPU machine without
    OpenGL, say): the video is made later, wherever the run folder is. The
    member is chosen as in `load_policy`, by default the run's `video.member`
    (the member training films). Its file is `videos/final.mp4`, or
    `videos/step<step>.mp4` with `step`, as training names it (a run that has
    not finished: `step<N>.mp4`, N the step its latest policy was evaluated
    at); another member's
    is named for it (`final-member<M>.mp4`, `step<step>-member<M>.mp4`), so it
    never replaces the run's own video. The episode is the one training films
    for that policy (the same env key), so `video.enabled=false` loses nothing.
    max_frames: as `video.max_frames`, an integer >= 1 (default: the run's).
    Returns `jaxrl.video.VideoResult` (mp4 path, episode return and length;
    `reason` when the env could not be drawn).
    """
    from jaxrl.video import record_episode

    max_frames = _integer("max_frames", max_frames)
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames={max_frames} is below 1; max_frames takes an integer >= 1")
    run_dir = folder_path(run_dir)
    run, algo, params, member = _trained(run_dir, seed, member, step)
    step = _integer("step", step)
    # training keys an episode by the env step its policy was evaluated at: the same episode, the same video
    evaluated = _evaluated_step(run_dir) if step is None else step
    # an unfinished run's latest policy is not its final one: named as training names a video mid-run
    name = "final" if step is None and read_summary(run_dir).get("status") == "finished" else f"step{evaluated}"
    if member != run.video.member:
        name += f"-member{member}"
    key = jax.random.PRNGKey(evaluated)
    return record_episode(
        algo.env, deterministic_policy(algo, params), key, run_dir / "videos",
        name, max_frames=run.video.max_frames if max_frames is None else max_frames,
    )


def _evaluated_step(run_dir: Path) -> int:
    """The env step of the run's last evaluation in metrics.jsonl, whose policy
    policy.msgpack holds (0 when none is logged)."""
    path = run_dir / "metrics.jsonl"
    rows = read_jsonl(path) if path.exists() else []
    return max((int(row["step"]) for row in rows if "eval/return_mean" in row), default=0)


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

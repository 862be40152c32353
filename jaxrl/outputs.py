"""What a run leaves in its folder besides metrics: the policy file, videos and
curves.png, each a hook on the training loop's events (`jaxrl.events`)."""

from __future__ import annotations

import dataclasses
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import flax.serialization
import jax
import numpy as np

from jaxrl.algos.base import Algorithm
from jaxrl.config import ConfigError, RunConfig
from jaxrl.events import ChunkDone, EvaluationDone, Hook, RunEnded
from jaxrl.files import FolderLock, run_files, write_atomically
from jaxrl.sinks.base import FanOut, RunInfo

__all__ = ["POLICY_FILE", "Curves", "PolicyFile", "Videos", "check_run_dir", "save_policy"]

POLICY_FILE = "policy.msgpack"


def finite_members(params: Any) -> np.ndarray:
    """[P] bool: whether every floating leaf of each member of `params` (host
    arrays with a leading member axis P) is finite. numpy, not jax: the params
    are already on the host, and jax would compile a program per leaf shape."""
    leaves = [np.asarray(x) for x in jax.tree.leaves(params)]
    return np.logical_and.reduce(
        [np.isfinite(x).reshape(len(x), -1).all(axis=1) for x in leaves if np.issubdtype(x.dtype, np.inexact)]
    )


def check_run_dir(run_dir: Path) -> None:
    """Raises ConfigError unless `run_dir` is a new or empty folder (jaxrl.watch's
    state file aside) that can be made and written to, naming the process that
    trains there or the run to resume where it holds one; it probes by making and removing a temporary folder
    in the nearest existing parent, and leaves nothing behind."""
    # os.path.exists, unlike Path.exists, is False for a name too long to look up
    if os.path.exists(run_dir):
        if not run_dir.is_dir():
            raise ConfigError(f"run_dir {run_dir} is a file; give a new or empty folder")
        if run_files(run_dir):
            holder = FolderLock(run_dir).holder()
            if holder:
                raise ConfigError(f"run_dir {run_dir} already holds files: {holder} is training there now; give a new or empty folder")
            if (run_dir / "config.yaml").is_file():
                raise ConfigError(
                    f"run_dir {run_dir} already holds a run; give a new or empty folder, or resume={run_dir} to go on with it"
                )
            raise ConfigError(f"run_dir {run_dir} already holds files; give a new or empty folder")
    target = run_dir.absolute()
    parent = target
    while not os.path.exists(parent):
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"run folder {run_dir} cannot be made: {parent} is a file (see run_dir, runs_root)")
    max_name = os.pathconf(parent, "PC_NAME_MAX")
    for name in target.relative_to(parent).parts:
        if len(os.fsencode(name)) > max_name:
            raise ConfigError(
                f"run folder name {name[:40]}... is {len(os.fsencode(name))} bytes, more than the {max_name} a "
                "file name may have; shorten runs_root, run_dir or env.id"
            )
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".jaxrl-probe-", dir=parent))
    except OSError as err:
        raise ConfigError(f"run folder {run_dir} cannot be made in {parent}: {err.strerror} (see run_dir, runs_root)") from None


def save_policy(run_dir: Path, params: Any) -> Path:
    """Writes the population's policy params (leading [P] axis) for `load_policy`.

    Written to a temporary file and renamed, so a kill mid-write leaves the
    previous policy intact; a failed write (a full disk) removes the temporary
    file and raises an OSError naming the policy's path.
    """
    path = run_dir / POLICY_FILE
    try:
        write_atomically(path, flax.serialization.to_bytes(params))
    except OSError as err:
        raise OSError(err.errno, f"could not save the policy to {path}: {err.strerror}") from err
    return path


class PolicyFile(Hook):
    """Rewrites `policy.msgpack` after every evaluation, so a crash or a kill
    still leaves the latest evaluated policy; at the end of a finished run it
    goes to `sinks` (a W&B artifact tagged "final") when they are given. A
    member whose parameters went NaN or infinite keeps its last finite ones
    in the file."""

    def __init__(self, run_dir: Path, sinks: FanOut | None = None):
        self.run_dir, self.sinks = run_dir, sinks

    def on_evaluation(self, event: EvaluationDone) -> None:
        """Saves the evaluated params, but for members whose params are not all finite."""
        params = event.params
        finite = finite_members(params)
        path = self.run_dir / POLICY_FILE
        if not finite.all():
            saved = flax.serialization.from_bytes(params, path.read_bytes()) if path.exists() else None
            # the file may hold no finite parameters of a member either (it went bad before its first evaluation)
            had = np.zeros_like(finite) if saved is None else finite_members(saved)
            kept, lost = np.flatnonzero(~finite & had).tolist(), np.flatnonzero(~finite & ~had).tolist()
            said = [f"keeps the last finite ones of member(s) {kept}"] if kept else []
            said += [f"holds non-finite ones for member(s) {lost}: none finite were saved before"] if lost else []
            warnings.warn(f"the policy parameters of member(s) {sorted(kept + lost)} are not finite at step {event.step}; "
                          f"{POLICY_FILE} {' and '.join(said)}", RuntimeWarning, stacklevel=2)
            if saved is not None:
                params = jax.tree.map(lambda new, old: np.where(finite.reshape(-1, *[1] * (new.ndim - 1)), new, old),
                                      params, saved)
        save_policy(self.run_dir, params)

    def on_end(self, event: RunEnded) -> None:
        """Hands the final policy file to the sinks."""
        if self.sinks is not None:
            self.sinks.log_artifact(event.step, "policy", self.run_dir / POLICY_FILE, ["final"])


@dataclasses.dataclass(frozen=True)
class _Deterministic:
    """`(params, obs, key) -> action`: an algorithm's deterministic policy.

    Hashable by the algorithm, so `jax.tree_util.Partial(_Deterministic(algo),
    params)` keeps params a traced argument and later films of the same run
    reuse the compiled rollout.
    """

    algo: Any

    def __call__(self, params: Any, obs: jax.Array, key: jax.Array) -> jax.Array:
        return self.algo.policy(params, obs, key, True)


def deterministic_policy(algo: Algorithm, params: Any) -> jax.tree_util.Partial:
    """`(obs, key) -> action` of one member's policy params, for `video.record_episode`."""
    return jax.tree_util.Partial(_Deterministic(algo), params)


class Videos(Hook):
    """Films member `video.member`'s deterministic policy to `videos/<name>.mp4`
    at the end (`video.enabled`) and every `video.every` evaluations, and hands
    each video to the sinks. A failure to film is a warning, never a lost run.
    """

    def __init__(self, algo: Algorithm, run: RunConfig, run_dir: Path, sinks: FanOut):
        self.algo, self.video, self.run_dir, self.sinks = algo, run.video, run_dir, sinks
        self.eval_every = run.eval.every
        # the last evaluation's policy params, on the host: what a chunk's film shows
        # (every filmed chunk was evaluated); the final film takes RunEnded's
        self.params: Any = None
        # why a film could not be made, told once: an env without a drawer would say so at every film
        self._told: set[str] = set()

    def on_start(self, run: RunInfo) -> None:
        """Renames the final videos of an earlier session (`final`, `final-member<M>`) to
        `step<start>...`: they show the policy this session goes on from (that session's final
        one, or the newest checkpoint that `jaxrl.film` filmed), and `final` must show this
        run's final policy, or be absent. A session that starts at the total trains nothing
        (a run killed among its final outputs): its final policy is theirs, and they keep their names."""
        if 0 < run.start_step < run.total_steps:
            for old in (self.run_dir / "videos").glob("final[.-]*"):
                old.replace(old.with_name(f"step{run.start_step}{old.name.removeprefix('final')}"))

    def on_evaluation(self, event: EvaluationDone) -> None:
        """Keeps the evaluated policy params, the next film's subject."""
        self.params = event.params

    def on_chunk(self, event: ChunkDone) -> None:
        """Films after every `eval.every x video.every` chunks, except the last (filmed as final)."""
        period = self.eval_every * self.video.every
        if self.video.enabled and period and not event.last and (event.index + 1) % period == 0:
            self.film(self.params, event.step, f"step{event.step}")

    def on_end(self, event: RunEnded) -> None:
        """Films the final policy as `final.mp4`."""
        if self.video.enabled:
            self.film(event.params, event.step, "final")

    def film(self, params: Any, step: int, name: str) -> None:
        """Records one episode of the filmed member's policy; params: the
        population's policy params ([P] leaves, `EvaluationDone`)."""
        from jaxrl.video import record_episode

        member = self.video.member
        if not finite_members(params)[member]:
            # such a policy's actions are NaN: an episode of the env standing still, not of the policy
            warnings.warn(f"no video at step {step}: member {member}'s policy parameters are not finite",
                          RuntimeWarning, stacklevel=2)
            return
        act = deterministic_policy(self.algo, jax.tree.map(lambda x: x[member], params))
        try:
            result = record_episode(
                self.algo.env, act, jax.random.PRNGKey(step), self.run_dir / "videos", name, max_frames=self.video.max_frames
            )
        except Exception as err:  # noqa: BLE001 (a video is never worth a lost run)
            warnings.warn(f"could not record a video: {type(err).__name__}: {err}", stacklevel=2)
            return
        if result.mp4 is None:
            if result.reason not in self._told:
                self._told.add(result.reason)
                warnings.warn(f"no video: {result.reason}", stacklevel=2)
            return
        self.sinks.log_video(step, member, result.mp4)


class Curves(Hook):
    """Draws `curves.png` at the end (return vs env steps, every member, mean
    and spread: per setting in a sweep, whose members' `groups` label) and hands
    it to the sinks for every member; a failure is a warning."""

    def __init__(self, run_dir: Path, num_members: int, sinks: FanOut, groups: dict[int, str] | None = None):
        self.run_dir, self.num_members, self.sinks, self.groups = run_dir, num_members, sinks, groups

    def on_end(self, event: RunEnded) -> None:
        """Plots metrics.jsonl."""
        from jaxrl.plots import plot_curves

        try:
            path = plot_curves(self.run_dir / "metrics.jsonl", self.run_dir / "curves.png", groups=self.groups)
        except Exception as err:  # noqa: BLE001 (a plot is never worth a lost run)
            warnings.warn(f"could not draw curves.png: {type(err).__name__}: {err}", stacklevel=2)
            return
        for member in range(self.num_members):
            self.sinks.log_image(event.step, member, "curves", path)

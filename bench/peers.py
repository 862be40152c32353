"""jaxrl against its peers at the same settings, back to back: ratios with medians.

Each comparison trains every side in a fresh subprocess, alternating
(jaxrl, peer, jaxrl, peer, ...) for --rounds rounds so that the machine's
drift spreads over all sides, and reports the median env steps/s of
training (compilation and warm-up excluded, as said per comparison) and
the ratio jaxrl/peer, ratios first.

  ppo-purejaxrl  PPO at PureJaxRL's shape (16 envs x 256 steps, 4 epochs x 32
                 minibatches, 2x256 tanh, obs+reward normalisation, lr 3e-4
                 annealed, gamma 0.99, lambda 0.95, clip 0.2) on gymnax
                 MountainCarContinuous-v0, one seed, against bench/peers/bare_ppo.py,
                 a single-file jit(train) PPO of that shape, and with --purejaxrl DIR
                 also against PureJaxRL's own ppo_continuous_action.py from the
                 checkout DIR (git clone https://github.com/luchris429/purejaxrl; it is
                 not a package, so nothing installs it), its env swapped for gymnax's
                 (bench/peers/purejaxrl_ppo.py).
  ppo1-sb3       jaxrl's PPO1 preset (experiment=humanoid_ppo1's algo settings:
                 1 env x 2048 steps, 10 epochs of minibatch 64, 2x64 tanh) on
                 MountainCarContinuous against Stable-Baselines3 PPO (PyTorch CPU).
  sac-sbx        SAC at the paper's settings (1 env, one gradient step per env step,
                 batch 256, 2x256 relu, buffer 1e6) against SBX's SAC and SB3's SAC.
  humanoid-brax  PPO on Brax humanoid (spring, 128 envs x 10 steps, 8 epochs x 8
                 minibatches, gamma 0.97, 2x256 silu) against brax.training's PPO,
                 with the final evaluation return of both; only with --humanoid or --only.

The peers of the last three live in bench/.peers-venv, which this script creates and fills on
first use (torch CPU wheel, stable-baselines3, sbx-rl, gymnasium, and the
jax/brax versions of the interpreter running this script); a stamp file
holding the requirement list makes later runs skip the install.

Every side runs with XLA_FLAGS unset: the peers as their users run them
(no CPU-scheduler guard), and jaxrl through `python -m jaxrl.train`, which
chooses for itself whether the env needs its guard against the CPU
runtime's deadlock (README, Architecture; none of the envs here does);
summary.json's xla_flags says what each jaxrl run had. Run it on
a quiet machine: PyTorch's default OpenMP threads slow down tenfold when
another process holds a core (--torch-threads 1 shows it), so the load
average at the start is part of the record.

    make bench-peers ARGS="--out results.json"
    .venv/bin/python bench/peers.py [--only sac-sbx] [--humanoid] [--rounds 3] [--quick] [--out results.json]
    .venv/bin/python bench/peers.py --only ppo-purejaxrl --purejaxrl ../purejaxrl --rounds 5
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
RUNNERS = ROOT / "bench" / "peers"
VENV = ROOT / "bench" / ".peers-venv"
PEER_PY = VENV / "bin" / "python"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def preset(name: str) -> dict:
    """The `algo` block of a jaxrl experiment preset (configs/experiment/<name>.yaml)."""
    return yaml.safe_load((ROOT / "configs" / "experiment" / f"{name}.yaml").read_text())["algo"]


def versions(python: Path | str, packages: list[str]) -> dict[str, str]:
    """Installed versions of `packages` in the environment of `python` (None where absent)."""
    code = (
        "import importlib.metadata as m, json, sys\n"
        "def v(p):\n    try: return m.version(p)\n    except m.PackageNotFoundError: return None\n"
        "print(json.dumps({p: v(p) for p in sys.argv[1:]}))"
    )
    return json.loads(subprocess.run([str(python), "-c", code, *packages], capture_output=True, text=True, check=True).stdout)


def ensure_peers_venv() -> None:
    """Creates and fills bench/.peers-venv unless its stamp names the same requirements.

    torch comes from PyTorch's CPU-only index when it answers, else from a
    CPU wheel pip's own configuration can find offline (find-links), else
    from PyPI; jax and brax are pinned to this interpreter's versions, so
    Brax's PPO and SBX run on the jax that jaxrl runs on.
    """
    pins = versions(sys.executable, ["jax", "brax"])
    spec = ["torch", "stable-baselines3", "sbx-rl", "gymnasium", f"jax=={pins['jax']}", f"jaxlib=={pins['jax']}", f"brax=={pins['brax']}"]
    stamp = VENV / ".installed"
    if stamp.exists() and stamp.read_text() == " ".join(spec):
        return
    print(f"installing the peers into {VENV} (a few minutes) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(PEER_PY), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    cpu_index = subprocess.run([*pip, "--retries", "0", "--timeout", "15", "torch", "--index-url", TORCH_CPU_INDEX], check=False)
    if cpu_index.returncode != 0:
        print(f"{TORCH_CPU_INDEX} did not serve torch; trying a local wheel, then PyPI", flush=True)
        subprocess.run([*pip, "--no-index", "--no-deps", "torch"], check=False)
    subprocess.run([*pip, *spec], check=True)
    stamp.write_text(" ".join(spec))


def last_json(out: str) -> dict:
    """The JSON object on the last line of a runner's stdout."""
    return json.loads(out.strip().splitlines()[-1])


def run_quietly(cmd: list[str], env: dict[str, str]) -> str:
    """Runs `cmd` in ROOT; its stdout, or a RuntimeError holding the end of its stderr."""
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd[:3])} ... exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc.stdout


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without XLA_FLAGS (see the module docstring), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    return {**env, **extra}


def jaxrl_side(overrides: list[str], skip_first_chunk: bool = False) -> Callable[[], dict]:
    """A run of `python -m jaxrl.train` (this checkout) with `overrides`, one seed, no logger, video or checkpoints.

    Steps/s is summary.json's (compilation excluded); with `skip_first_chunk`
    it is over the chunks after the first, from metrics.jsonl's per-chunk
    perf/sps, for peers whose figure leaves out their own first epoch or
    warm-up (summary.json's stays in the result as summary_sps).
    """

    def run() -> dict:
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "jaxrl.train", *overrides, "seeds=1", "logger=none", "video.enabled=false",
                   "checkpoint.enabled=false", "eval.every=100000", f"run_dir={tmp}/run"]
            run_quietly(cmd, clean_env(PYTHONPATH=str(ROOT)))
            summary = json.loads(Path(tmp, "run", "summary.json").read_text())
            rows = [json.loads(line) for line in Path(tmp, "run", "metrics.jsonl").read_text().splitlines()]
        result = {"sps": summary["sps"], "compile_s": summary["compile_s"], "return": summary["final"]["eval/return_mean"][0],
                  "xla_flags": summary["xla_flags"], "chunk_sps": [r["perf/sps"] for r in rows]}
        if skip_first_chunk:
            steps = [b["step"] - a["step"] for a, b in itertools.pairwise(rows)]
            result["summary_sps"] = result["sps"]
            result["sps"] = sum(steps) / sum(s / r["perf/sps"] for s, r in zip(steps, rows[1:]))
        return result

    return run


def script_side(python: Path | str, script: str, settings: dict) -> Callable[[], dict]:
    """A run of bench/peers/<script> under `python` with `settings` as its JSON argument."""
    return lambda: last_json(run_quietly([str(python), str(RUNNERS / script), json.dumps(settings)], clean_env()))


@dataclass
class Comparison:
    """jaxrl (the first side) against one or more peers, at the settings in `settings`."""

    name: str
    settings: dict
    sides: dict[str, Callable[[], dict]]
    measure: str  # what the steps/s figure covers, per side


def ppo_purejaxrl(steps: int, purejaxrl: Path | None) -> Comparison:
    """PPO at PureJaxRL's shape: jaxrl against the bare single-file PPO, and
    against PureJaxRL's own script from the checkout `purejaxrl` when given."""
    s = {"total_timesteps": steps, "num_envs": 16, "rollout_length": 256, "num_epochs": 4, "num_minibatches": 32,
         "hidden": [256, 256], "lr": 3e-4, "anneal_lr": True, "gamma": 0.99, "gae_lambda": 0.95, "clip_eps": 0.2,
         "ent_coef": 0.0, "vf_coef": 0.5, "max_grad_norm": 0.5, "seed": 0}
    overrides = ["algo=ppo", "env=mountaincar_continuous", f"total_timesteps={steps}", "num_logs=10", "eval.episodes=4",
                 *(f"algo.{k}={json.dumps(s[k])}" for k in ("num_envs", "rollout_length", "num_epochs", "num_minibatches",
                   "hidden", "lr", "anneal_lr", "gamma", "gae_lambda", "clip_eps", "ent_coef", "vf_coef", "max_grad_norm")),
                 "algo.activation=tanh", "algo.normalize_obs=true", "algo.normalize_reward=true", "algo.clip_value=true"]
    sides = {"jaxrl": jaxrl_side(overrides), "bare": script_side(sys.executable, "bare_ppo.py", s)}
    if purejaxrl is not None:
        sides["purejaxrl"] = script_side(sys.executable, "purejaxrl_ppo.py", {**s, "purejaxrl": str(purejaxrl.resolve())})
    return Comparison("ppo-purejaxrl", s, sides,
                      "every side: the whole compiled training run, compilation excluded; every side started without "
                      "XLA_FLAGS (the peers run as a user runs them, jaxrl chooses its own XLA flags)")


def ppo1_sb3(steps: int, warmup: int, torch_threads: int | None) -> Comparison:
    """jaxrl's PPO1 preset on MountainCarContinuous against SB3's PPO with the same settings."""
    p = preset("humanoid_ppo1")
    s = {"total_timesteps": steps, "warmup_steps": warmup, "rollout_length": p["rollout_length"],
         "minibatch_size": p["rollout_length"] * p["num_envs"] // p["num_minibatches"], "num_epochs": p["num_epochs"],
         "hidden": p["hidden"], "lr": p["lr"], "gamma": p["gamma"], "gae_lambda": p["gae_lambda"], "clip_eps": p["clip_eps"],
         "ent_coef": p["ent_coef"], "vf_coef": p["vf_coef"], "max_grad_norm": p["max_grad_norm"], "seed": 0,
         "torch_threads": torch_threads}
    overrides = ["experiment=humanoid_ppo1", "env=mountaincar_continuous", f"total_timesteps={steps}", "num_logs=10", "eval.episodes=4"]
    return Comparison("ppo1-sb3", s, {"jaxrl": jaxrl_side(overrides), "sb3": script_side(PEER_PY, "sb3_run.py", {**s, "lib": "sb3", "algo": "ppo"})},
                      "jaxrl: the compiled run, compilation excluded; sb3: learn() after a warm-up learn() of warmup_steps")


def sac_sbx(steps: int, learning_starts: int, torch_threads: int | None) -> Comparison:
    """SAC at the paper's settings: jaxrl against SBX and SB3."""
    s = {"total_timesteps": steps, "learning_starts": learning_starts, "warmup_steps": 2 * learning_starts,
         "buffer_size": 1_000_000, "batch_size": 256, "hidden": [256, 256], "lr": 3e-4, "gamma": 0.99, "tau": 0.005,
         "seed": 0, "torch_threads": torch_threads}
    overrides = ["algo=sac", "env=mountaincar_continuous", f"total_timesteps={steps}", f"num_logs={steps // learning_starts}",
                 "eval.episodes=4", "algo.num_envs=1", "algo.rollout_length=1", "algo.gradient_steps=1", "algo.batch_size=256",
                 "algo.buffer_size=1000000", f"algo.warmup_steps={learning_starts}", "algo.hidden=[256,256]", "algo.activation=relu"]
    peer = {**s, "algo": "sac"}
    return Comparison("sac-sbx", s, {"jaxrl": jaxrl_side(overrides, skip_first_chunk=True),
                                     "sbx": script_side(PEER_PY, "sb3_run.py", {**peer, "lib": "sbx"}),
                                     "sb3": script_side(PEER_PY, "sb3_run.py", {**peer, "lib": "sb3"})},
                      "jaxrl: chunks after the first (which is the learning_starts random steps), compilation excluded; "
                      "sbx/sb3: learn() after a warm-up learn() of learning_starts random + learning_starts gradient steps")


def humanoid_brax(steps: int, chunks: int) -> Comparison:
    """PPO on Brax humanoid (spring): jaxrl's humanoid_ppo preset at Brax's settings against brax.training's PPO."""
    p = preset("humanoid_ppo")
    unit = 128 * 10 * chunks  # one update (128 envs x 10 steps) per chunk: budgets both sides run exactly
    s = {"env": "humanoid", "backend": "spring", "episode_length": 1000, "total_timesteps": -(-steps // unit) * unit,
         "num_chunks": chunks, "num_envs": 128, "rollout_length": 10, "num_epochs": 8, "num_minibatches": 8,
         "hidden": p["hidden"], "lr": p["lr"], "ent_coef": p["ent_coef"], "gamma": 0.97, "gae_lambda": p["gae_lambda"],
         "clip_eps": p["clip_eps"], "vf_coef": p["vf_coef"], "max_grad_norm": p["max_grad_norm"], "reward_scaling": 0.1,
         "eval_episodes": 16, "seed": 0}
    overrides = ["experiment=humanoid_ppo", "env.backend=spring", "env.episode_length=1000", f"total_timesteps={s['total_timesteps']}",
                 f"num_logs={chunks}", "eval.episodes=16", "algo.num_envs=128", "algo.rollout_length=10", "algo.num_epochs=8",
                 "algo.num_minibatches=8", "algo.gamma=0.97"]
    return Comparison("humanoid-brax", s, {"jaxrl": jaxrl_side(overrides, skip_first_chunk=True),
                                           "brax": script_side(PEER_PY, "brax_ppo.py", s)},
                      "jaxrl: chunks 2.. (its first chunk is left out as Brax leaves out its first epoch); brax: its own training/sps over epochs 2.. "
                      "(the first compiles); return: deterministic evaluation at the end, 16 episodes. Rewards: jaxrl normalises "
                      "them (the preset), Brax scales them by 0.1 (reward_scaling)")


def compare(c: Comparison, rounds: int) -> dict:
    """Runs every side of `c` once per round, alternating; medians and jaxrl/peer ratios."""
    runs: dict[str, list[dict]] = {side: [] for side in c.sides}
    for i in range(rounds):
        for side, run in c.sides.items():
            result = run()
            runs[side].append(result)
            extra = f"  return {result['return']:.1f}" if "return" in result else ""
            print(f"  {c.name} round {i + 1} {side:6s} {result['sps']:>10,.1f} env steps/s{extra}", flush=True)
    medians = {side: statistics.median(r["sps"] for r in rs) for side, rs in runs.items()}
    returns = {side: statistics.median(r["return"] for r in rs) for side, rs in runs.items() if all("return" in r for r in rs)}
    ratios = {f"jaxrl/{side}": medians["jaxrl"] / m for side, m in medians.items() if side != "jaxrl"}
    return {"settings": c.settings, "measure": c.measure, "ratios": ratios, "median_sps": medians,
            "median_return": returns, "runs": runs}


def machine() -> dict:
    """CPU model, cores, load average, Python and the versions both environments run."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {
        "cpu": cpu, "cores": os.cpu_count(), "load_average_at_start": os.getloadavg(), "python": platform.python_version(),
        "jaxrl_env": versions(sys.executable, ["jax", "jaxlib", "flax", "optax", "gymnax", "brax"]),
        "peers_env": versions(PEER_PY, ["torch", "stable-baselines3", "sbx-rl", "gymnasium", "jax", "jaxlib", "flax", "brax"])
        if PEER_PY.exists() else None,
    }


def git_commit(checkout: Path | None) -> str | None:
    """The commit `checkout` has out, or None (no checkout given, or not a git one)."""
    if checkout is None:
        return None
    proc = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def fmt(sps: float) -> str:
    """Steps/s in thousands above 10k, else as they are."""
    return f"{sps / 1000:.1f}k" if sps >= 10_000 else f"{sps:,.0f}"


def report(results: dict, rounds: int) -> str:
    """The table, ratios first, then what each figure measures and the machine."""
    lines = []
    for name, r in results["comparisons"].items():
        if "error" in r:
            lines.append(f"{name:14s} FAILED: {r['error'].splitlines()[0]}")
            continue
        for ratio, value in r["ratios"].items():
            peer = ratio.split("/")[1]
            rets = r["median_return"]
            ret = f"; return jaxrl {rets['jaxrl']:.0f}, {peer} {rets[peer]:.0f}" if name == "humanoid-brax" else ""
            lines.append(f"{name:14s} {ratio:12s} {value:5.2f}x  (jaxrl {fmt(r['median_sps']['jaxrl'])}, {peer} "
                         f"{fmt(r['median_sps'][peer])} env steps/s{ret}, medians of {rounds})")
    lines.append("")
    for name, r in results["comparisons"].items():
        if "measure" in r:
            lines.append(f"{name}: {r['measure']}; {r['settings']['total_timesteps']} env steps per run")
    m = results["machine"]
    load = m["load_average_at_start"][0]
    lines += ["", f"{m['cpu']}, {m['cores']} cores, load average at start {load:.2f}; python {m['python']}",
              f"jaxrl env: {m['jaxrl_env']}", f"peers env: {m['peers_env']}", f"{results['date']}   {results['command']}"]
    if results["purejaxrl_commit"]:
        lines.append(f"purejaxrl checkout at {results['purejaxrl_commit']}")
    return "\n".join(lines)


def main() -> None:
    """Parses the arguments, installs the peers if needed, runs the comparisons, prints and saves the results."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    names = ["ppo-purejaxrl", "ppo1-sb3", "sac-sbx", "humanoid-brax"]
    parser.add_argument("--only", action="append", choices=names, help="run this comparison (repeatable); default: all but humanoid-brax")
    parser.add_argument("--humanoid", action="store_true", help="also run humanoid-brax")
    parser.add_argument("--rounds", type=int, help="runs of each side (default 3; 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="tiny budgets: an end-to-end smoke check, not a record")
    parser.add_argument("--humanoid-steps", type=int, default=300_000, help="env steps per humanoid run (rounded up to whole chunks)")
    parser.add_argument("--torch-threads", type=int, help="torch.set_num_threads for SB3 (default: torch's own)")
    parser.add_argument("--purejaxrl", type=Path, metavar="DIR",
                        help="a checkout of github.com/luchris429/purejaxrl: ppo-purejaxrl also runs its own PPO")
    parser.add_argument("--out", type=Path, help="write the results here as JSON")
    args = parser.parse_args()
    if args.purejaxrl is not None and not (args.purejaxrl / "purejaxrl" / "ppo_continuous_action.py").is_file():
        parser.error(f"--purejaxrl {args.purejaxrl}: no purejaxrl/ppo_continuous_action.py there; give a checkout of "
                     "https://github.com/luchris429/purejaxrl")
    selected = args.only or names[:3] + (names[3:] if args.humanoid else [])
    q = args.quick
    comparisons = {
        "ppo-purejaxrl": lambda: ppo_purejaxrl(65_536 if q else 491_520, args.purejaxrl),
        "ppo1-sb3": lambda: ppo1_sb3(8_192 if q else 49_152, 2_048, args.torch_threads),
        "sac-sbx": lambda: sac_sbx(2_000 if q else 12_000, 500 if q else 1_000, args.torch_threads),
        "humanoid-brax": lambda: humanoid_brax(5_120 if q else args.humanoid_steps, 2 if q else 5),
    }
    if set(selected) - {"ppo-purejaxrl"}:  # the one comparison whose sides all run in jaxrl's environment
        ensure_peers_venv()
    if os.getloadavg()[0] > 0.5:
        print(f"warning: load average {os.getloadavg()[0]:.2f}: the CPU was busy in the last minute; "
              "another process running alongside skews these figures (PyTorch's most)", flush=True)
    rounds = args.rounds or (1 if q else 3)
    results = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "purejaxrl_commit": git_commit(args.purejaxrl),
               "command": shlex.join([Path(sys.executable).name, *sys.argv]), "machine": machine(), "rounds": rounds,
               "quick": q, "torch_threads": args.torch_threads, "comparisons": {}}
    for name in selected:
        print(f"{name} ...", flush=True)
        try:
            results["comparisons"][name] = compare(comparisons[name](), rounds)
        except RuntimeError as err:
            print(err, file=sys.stderr, flush=True)
            results["comparisons"][name] = {"error": str(err)}
    print("\n" + report(results, rounds))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

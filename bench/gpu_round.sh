#!/usr/bin/env bash
# The accelerator benchmarks of docs/benchmarks.md in one pass, each stage
# capped in wall time so that the whole fits a rented GPU's slot:
#   1. experiment=humanoid_ppo as a user runs it (SIGTERM at the cap: the run
#      checkpoints and keeps metrics.jsonl, whose eval/return_mean against
#      perf/wall_s is the time-to-return curve);
#   2. bench/bench_population.py: 1, 8, 64, 256 vmapped PPO members;
#   3. experiment=humanoid_sac, likewise capped;
#   4. (not by default) playground: humanoid_ppo's settings on MuJoCo
#      Playground's HumanoidWalk, MJX jax implementation, likewise capped.
# A stage that fails does not stop the next. Results go to OUTDIR: a log per
# stage, population.json, and runs.tgz (each run's metrics.jsonl,
# summary.json, config.yaml and policy.msgpack, for curves and videos made
# elsewhere with jaxrl.load_policy).
#
#   bash bench/gpu_round.sh OUTDIR            # caps: PPO_S=330 POP_S=120 SAC_S=90 PG_S=300
#
# STAGES picks and orders the stages (default "ppo population sac"), PPO_ARGS,
# SAC_ARGS and PG_ARGS add overrides to those runs;
# POP_MEMBERS the population sizes (default 1,8,64,256); POP_PROFILE=1 traces
# one chunk of each into OUTDIR/trace_<P>.json.gz and prints where the device
# time goes (keep POP_MEMBERS short then: the files that come back are few);
# POP_ARGS adds bench_population.py options, which win over the stage's own
# (POP_ARGS="--experiment sac_mountaincar --updates 4096" for SAC's population).
#
# jaxrl must be installed (not run from this checkout's source: the trainer
# finds its configs as the installed package jaxrl.configs); the playground
# stage needs the playground package too, but not warp-lang.
set -u
out=${1:?usage: bash bench/gpu_round.sh OUTDIR}
py=${PYTHON:-python3}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
mkdir -p "$out"
export PYTHONUNBUFFERED=1

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$py" -c "import jax; print('jax', jax.__version__, jax.devices())"; } 2>&1 | tee "$out/machine.txt"

train() {  # train NAME CAP_S OVERRIDES...: one capped CLI run into $work/NAME
  local name=$1 cap=$2; shift 2
  (cd "$work" && timeout -s TERM "$cap" "$py" -m jaxrl.train "$@" logger=none alerts=none video.enabled=false \
    run_dir="$work/$name") > "$out/$name.log" 2>&1
  echo "$name: exit $? (124: stopped at the ${cap}s cap)"; tail -n 4 "$out/$name.log"
}

for stage in ${STAGES:-ppo population sac}; do
  case $stage in
    ppo) train ppo "${PPO_S:-330}" experiment=humanoid_ppo ${PPO_ARGS:-} ;;
    population) timeout "${POP_S:-120}" "$py" "$here/bench_population.py" --members "${POP_MEMBERS:-1,8,64,256}" \
        --updates 4 --chunks 2 --repeats 2 --json "$out/population.json" ${POP_PROFILE:+--profile "$out"} ${POP_ARGS:-} 2>&1 \
        | tee "$out/population.log" ;;
    sac) train sac "${SAC_S:-90}" experiment=humanoid_sac ${SAC_ARGS:-} ;;
    playground) train playground "${PG_S:-300}" experiment=humanoid_ppo env=playground env.name=HumanoidWalk \
        env.id=humanoid_walk env.backend=jax ${PG_ARGS:-} ;;
    *) echo "unknown stage $stage (ppo, population, sac, playground)"; exit 2 ;;
  esac
done

files=$(cd "$work" && ls -d {ppo,sac,playground}/{metrics.jsonl,summary.json,config.yaml,policy.msgpack} 2>/dev/null)
tar czf "$out/runs.tgz" -C "$work" $files
"$py" - "$work" <<'EOF'
import json, sys, pathlib
for name in ("ppo", "sac", "playground"):
    path = pathlib.Path(sys.argv[1], name, "metrics.jsonl")
    if not path.exists():
        continue
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    evals = [(r["step"], r["perf/wall_s"], r["eval/return_mean"]) for r in rows if "eval/return_mean" in r]
    print(f"{name}: {len(rows)} points, last step {rows[-1]['step']:,}, sps {rows[-1]['perf/sps']:,.0f}")
    for step, wall, ret in evals:
        print(f"  step {step:>11,}  wall {wall:7.1f} s  eval return {ret:8.1f}")
EOF

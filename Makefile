# The two commands a new user needs:
#   make train   set up .venv and run the default job (PPO on MountainCarContinuous)
#   make test    set up .venv and run the test suite
# Extra arguments go to the trainer / pytest: make train ARGS="algo=sac seeds=4"

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# every dependency pinned, for every Python >= 3.11 and platform: what the suite passed on
LOCK := constraints.txt

.PHONY: setup train test bench bench-peers lock clean

setup: $(STAMP)

$(STAMP): pyproject.toml $(LOCK) scripts/install_system_deps.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(LOCK) -e ".[test]"
	bash scripts/install_system_deps.sh
	touch $(STAMP)

train: setup
	$(PY) -m jaxrl.train $(ARGS)

test: setup
	$(PY) -m pytest $(ARGS)

bench: setup
	$(PY) bench/bench_ppo.py $(ARGS)

# jaxrl against PureJaxRL-style PPO, SB3, SBX and Brax at the same settings;
# installs the peers into bench/.peers-venv on first use (bench/peers.py --help)
bench-peers: setup
	$(PY) bench/peers.py $(ARGS)

# pins the newest versions pyproject.toml's ranges allow, anew (then run make test)
lock: setup
	$(PY) -m pip install --quiet uv
	$(VENV)/bin/uv pip compile --quiet --universal --upgrade --extra test pyproject.toml -o $(LOCK)

# the environment only: runs/ holds trained agents, which no make target deletes
clean:
	rm -rf $(VENV)

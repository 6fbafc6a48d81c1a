# The two commands of the README's quick start, from nothing:
#
#   make quickval   # set up .venv (first time only) and validate the whole pipeline on the stand-ins
#   make test       # set up .venv (first time only) and run the test suite (what CI runs)
#   make gpu-check  # on a CUDA machine: set up .venv-gpu and run the smoke run through Unsloth, offline
#
# The environment is rebuilt only when pyproject.toml, scripts/install.sh or scripts/constraints.txt change.
PYTHON_VENV := .venv/bin/python
STAMP := .venv/.installed-dev
# The venv's tools (ruff, shellcheck, torchrun) on PATH, as an activated venv would have them.
export PATH := $(CURDIR)/.venv/bin:$(PATH)

.PHONY: setup quickval test gpu-check
setup: $(STAMP)

$(STAMP): pyproject.toml scripts/install.sh scripts/constraints.txt
	bash scripts/install.sh dev
	touch $@

quickval: $(STAMP)
	$(PYTHON_VENV) training/train.py --config configs/experiments/quick_val.py

# Two pytest workers, a test file each at a time (module fixtures stay in one process): most tests
# wait on a CLI process they started, each with one intra-op thread (tests/conftest.py).
test: $(STAMP)
	$(PYTHON_VENV) -m pytest -q -n 2 --dist loadfile

# The CUDA path in minutes, with no download: the smoke run (training.pod.smoke) on the stand-in, which a
# GPU machine with the gpu extra trains through Unsloth in 4 bits. README "A GPU check" says what it proves.
GPU_VENV := .venv-gpu
$(GPU_VENV)/.installed-gpu: pyproject.toml scripts/install.sh scripts/constraints.txt
	VENV=$(GPU_VENV) bash scripts/install.sh gpu
	touch $@

gpu-check: $(GPU_VENV)/.installed-gpu
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled \
		$(GPU_VENV)/bin/python -m training.pod.smoke --config configs/experiments/quick_val.py

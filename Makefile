# The two commands of the README's quick start, from nothing:
#
#   make quickval   # set up .venv (first time only) and validate the whole pipeline on the stand-ins
#   make test       # set up .venv (first time only) and run the test suite (what CI runs)
#
# The environment is rebuilt only when pyproject.toml or scripts/install.sh change.
PYTHON_VENV := .venv/bin/python
STAMP := .venv/.installed-dev
# The venv's tools (ruff, shellcheck, torchrun) on PATH, as an activated venv would have them.
export PATH := $(CURDIR)/.venv/bin:$(PATH)

.PHONY: setup quickval test
setup: $(STAMP)

$(STAMP): pyproject.toml scripts/install.sh
	bash scripts/install.sh dev
	touch $@

quickval: $(STAMP)
	$(PYTHON_VENV) training/train.py --config configs/experiments/quick_val.py

test: $(STAMP)
	$(PYTHON_VENV) -m pytest -q

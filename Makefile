# Two commands (see README "Quick start"): `make demo` and `make test`.
# Both create ./.venv on first use. TORCH is the torch requirement installed before the project:
# the default is the CPU build kept on this project's machines; on a GPU box use e.g. TORCH=torch.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
OUT ?= results/demo

.PHONY: setup demo test test-all bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

demo: setup
	$(VENV)/bin/rbc-ray train tune_configs/open_rbc_smoke.yaml --out $(OUT)

test: setup
	$(PY) -m pytest -q

test-all: setup
	$(PY) -m pytest -q --runslow

bench: setup
	$(VENV)/bin/rbc-ray bench env --json --quick

clean:
	rm -rf $(VENV) results .pytest_cache

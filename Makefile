# Two commands do all the set-up on a fresh Linux machine with python3.11 and make:
#   make demo   creates .venv, makes synthetic AVE-format data, trains and evaluates DPNet
#   make test   creates .venv and runs the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
AVEL := $(VENV)/bin/avel-dgl
DEMO_DATA ?= data/synthetic
DEMO_RUN ?= runs/demo

.PHONY: venv demo test clean-demo

venv: $(VENV)/.installed

# The pinned default stack (requirements-pinned.txt: torch 2.2.1 with DGL 2.1.0), within the
# ranges pyproject.toml declares; scripts/check_current_stack.sh tests the newest stack instead.
$(VENV)/.installed: pyproject.toml requirements-pinned.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-pinned.txt -e ".[dgl,test]"
	touch $@

demo: venv
	$(AVEL) make-synthetic --out $(DEMO_DATA) --videos 600 --seed 0 --overwrite
	$(AVEL) check-data $(DEMO_DATA)
	$(AVEL) train --task sel --preset small --data $(DEMO_DATA) --out $(DEMO_RUN) --overwrite
	$(AVEL) evaluate --split o-ave --checkpoint $(DEMO_RUN)/best.pt --data $(DEMO_DATA) --overwrite
	$(AVEL) evaluate --split c-ave --checkpoint $(DEMO_RUN)/best.pt --data $(DEMO_DATA) --overwrite

test: venv
	$(PY) -m pytest -q

clean-demo:
	rm -rf $(DEMO_DATA) $(DEMO_RUN)

# Set-up and the main jobs. Each target creates .venv if missing and installs the project.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-slow timm-suite lint bench gpu-check gpu-check-smoke clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) -m preattn demo

test: $(VENV)/.installed-dev
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m pytest -m "not slow"

# the heavy cases (deep networks, multi-process DDP); CI runs them after `make test`
test-slow: $(VENV)/.installed-dev
	$(PY) -m pytest -m slow

# timm's own model tests (tests/test_models.py of a pytorch-image-models checkout) against
# the registered preattn_* models: make timm-suite TIMM_TESTS=/path/to/pytorch-image-models/tests
timm-suite: $(VENV)/.installed-dev
	cd $(TIMM_TESTS) && $(abspath $(PY)) -m pytest -p preattn.timm test_models.py \
		-k preattn -p no:cacheprovider -q

# the device check on a GPU machine with its own torch and no network (scripts/gpu_check.sh
# says how to bring Fashion-MNIST along); results in runs/gpu-check/
gpu-check:
	PYTHON=$(PYTHON) bash scripts/gpu_check.sh

# the same steps on this machine's CPU at toy sizes (CI runs it)
gpu-check-smoke: $(VENV)/.installed-dev
	PYTHON=$(abspath $(PY)) bash scripts/gpu_check.sh --smoke --out runs/gpu-check-smoke

lint: $(VENV)/.installed-dev
	$(PY) -m ruff check src tests benchmarks experiments
	$(PY) -m ruff format --check src tests benchmarks experiments

bench: $(VENV)/.installed-dev
	$(PY) benchmarks/targets.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache

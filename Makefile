# The two commands of the README: `make demo` and `make test`.  Both create the
# virtual environment and install the pinned dependencies when needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat setup.py ride_tf/codec/*.c | cksum | cut -d" " -f1)

export PYTHONUNBUFFERED := 1

.PHONY: venv demo test bench clean

venv: $(STAMP)

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,examples,serving,beam]"
	rm -f $(VENV)/.installed-*
	touch $@

demo: venv
	$(PY) examples/demo.py

test: venv
	$(VENV)/bin/ruff check ride_tf tests examples benchmarks export
	$(PY) -m pytest -q tests

bench: venv
	$(PY) benchmarks/bench_spatial_lstm.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache

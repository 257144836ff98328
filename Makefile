# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

.PHONY: demo test test-fast bench docs clean venv browser

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/igaudit demo

# the fast loop (unit and wiring tests, <= 90 s here; its time printed on its own line)
test-fast: $(STAMP)
	@start=$$(date +%s) && $(PY) -m pytest -q -m "not slow" tests && echo "fast loop: $$(( $$(date +%s) - start )) s"

# the fast loop first, then the slow tests (whole runs, subprocesses, browser)
test: test-fast
	$(PY) -m pytest -q -m slow --durations=10 tests

# the configuration reference (docs/configuration.md) from the schema
docs: $(STAMP)
	$(PY) -m igaudit.pipeline.config_reference

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,bench]'
	$(PY) -m benchmarks.run
	$(PY) -m benchmarks.policy
	$(PY) -m benchmarks.buckets
	$(PY) -m benchmarks.dataset_scale
	$(PY) -m benchmarks.incremental
	$(PY) -m benchmarks.zoo

# Debian's Chromium + ChromeDriver for the report's browser test (needs root and apt).
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
	  echo "chromium and chromedriver present"; \
	else \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	fi

clean:
	rm -rf out data/demo models/demo*.keras .pytest_cache

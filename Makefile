# The two commands of the README: `make app` and `make test`. Both set everything up first.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup app test lint chromium

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

app: setup
	$(VENV)/bin/cure app

# The browser test drives Debian's chromium; install it when missing (needs root, as in CI).
chromium:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || echo "chromium is missing and could not be installed (run as root: apt-get install -y chromium); the browser test will fail"

# The suite on two workers (one torch thread each: two cores; a module's tests stay on one worker,
# which builds its fixtures once), then the exactness tests again on torch's kernels for other
# CPUs: the portable ones always, AVX2's too on an AVX-512 CPU (torch takes the best kernels the
# CPU has), so that no tolerance holds on this CPU's kernels alone. The slow lane is `test-slow`.
PYTEST := OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --dist loadfile --durations=15
OTHER_KERNELS := default $(if $(shell grep -m1 -o avx512f /proc/cpuinfo 2>/dev/null),avx2)

test: setup chromium
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(PYTEST) -m "not slow"
	for kernels in $(OTHER_KERNELS); do ATEN_CPU_CAPABILITY=$$kernels $(PYTEST) -m "exactness and not slow" || exit 1; done

# The longer variants of tests that `make test` leaves out (about 5 CPU-minutes).
test-slow: setup chromium
	$(PYTEST) -m slow

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/lint-imports

.PHONY: test-fast test-slow screenshots

# The fast lane: ruff and the unit tests, without the MovieLens-100K integration tests, the slow
# lane and the modules that start the app, studies or several processes.
FAST_SKIPS := browser app studies distributed distributed_unlearning user_unlearning concurrency references model
test-fast: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --dist loadfile -m "not integration and not slow" \
		$(foreach m,$(FAST_SKIPS),--ignore=tests/test_$(m).py)

# The app's pictures in docs/img: starts the app on the default model (a fresh cache trains it and
# its Retrain first) and drives Chromium through every page.
screenshots: setup chromium
	$(PY) docs/screenshots.py

# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv (Python 3.11, pinned packages), prepare models/, then run.
# Second runs reuse what is there: the stamps below make set-up a no-op.

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
SHARED ?= ../shared
INPUT  ?= $(SHARED)/data/video/obama.mp4

.PHONY: demo test extension bench models clean

$(VENV)/.runtime: requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-deps -r requirements.lock
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.lock
	$(PY) -m pip install --quiet --no-deps -r requirements-dev.lock
	touch $@

models/.ready: $(VENV)/.runtime scripts/fetch_models.py
	$(PY) scripts/fetch_models.py
	touch $@

models: models/.ready

demo: models/.ready $(VENV)/.dev
	@test -e "$(INPUT)" || { echo "No sample video at $(INPUT): run make demo INPUT=path/to/clip.mp4"; exit 1; }
	@mkdir -p out
	$(PY) scripts/capture.py --input "$(INPUT)" --take out/demo.npz \
		--preview out/demo_preview.mp4 --output out/demo.blend

test: models/.ready $(VENV)/.dev
	$(PY) -m pytest -q tests

extension: $(VENV)/.dev
	$(PY) scripts/build_extension.py --out dist

bench: models/.ready $(VENV)/.dev
	$(PY) benchmarks/bench_capture.py
	$(PY) benchmarks/bench_stability.py
	$(PY) benchmarks/bench_bake.py
	$(PY) benchmarks/bench_live.py

clean:
	rm -rf $(VENV) models out dist

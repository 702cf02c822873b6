# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv (Python 3.11, pinned packages), prepare models/, then run.
# Second runs reuse what is there: the stamps below make set-up a no-op.

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
SHARED ?= ../shared
INPUT  ?= $(SHARED)/data/video/obama.mp4

.PHONY: demo test extension bench models clean train-venv test-train bench-adapt ffmpeg

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

# Actor adaptation (scripts/adapt.py) needs PyTorch (CPU): its own venv, so that capture,
# the extension and `make test` provably never need it. TRAIN_PIP_ARGS: extra pip options,
# e.g. PyTorch's CPU index on machines without a local torch wheel (see requirements-train.lock).
TRAIN_VENV := .venv-train
TRAIN_PY   := $(TRAIN_VENV)/bin/python
TRAIN_PIP_ARGS ?=

$(TRAIN_VENV)/.ready: requirements.lock requirements-train.lock requirements-dev.lock
	$(PYTHON) -m venv $(TRAIN_VENV)
	$(TRAIN_PY) -m pip install --quiet --upgrade pip
	$(TRAIN_PY) -m pip install --quiet --no-deps $(TRAIN_PIP_ARGS) -r requirements.lock -r requirements-train.lock
	grep -E '^(pytest|iniconfig|pluggy|Pygments)==' requirements-dev.lock > $(TRAIN_VENV)/pytest.lock
	$(TRAIN_PY) -m pip install --quiet --no-deps -r $(TRAIN_VENV)/pytest.lock
	touch $@

train-venv: $(TRAIN_VENV)/.ready

# The tests that need PyTorch (they skip under `make test`); .ci/run calls this too.
test-train: models/.ready $(TRAIN_VENV)/.ready
	$(TRAIN_PY) -m pytest -q tests/test_train_losses.py tests/test_train_model.py tests/test_adapt_cli.py

bench-adapt: models/.ready $(TRAIN_VENV)/.ready
	$(TRAIN_PY) benchmarks/bench_adapt.py

demo: models/.ready $(VENV)/.dev
	@test -e "$(INPUT)" || { echo "No sample video at $(INPUT): run make demo INPUT=path/to/clip.mp4"; exit 1; }
	@mkdir -p out
	$(PY) scripts/capture.py --input "$(INPUT)" --take out/demo.npz \
		--preview out/demo_preview.mp4 --output out/demo.blend

# ffmpeg makes the bad-input and memory footage at run time (Debian's package).
ffmpeg:
	@command -v ffmpeg >/dev/null || { apt-get update -qq && apt-get install -y -qq ffmpeg; }

test: models/.ready $(VENV)/.dev ffmpeg
	$(PY) -m pytest -q tests

extension: $(VENV)/.dev
	$(PY) scripts/build_extension.py --out dist

bench: models/.ready $(VENV)/.dev ffmpeg
	$(PY) benchmarks/bench_capture.py
	$(PY) benchmarks/bench_stability.py
	$(PY) benchmarks/bench_bake.py
	$(PY) benchmarks/bench_live.py
	$(PY) benchmarks/bench_memory.py
	$(PY) benchmarks/bench_accuracy.py

clean:
	rm -rf $(VENV) $(TRAIN_VENV) models out dist

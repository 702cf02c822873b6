# Two entry points for a fresh machine: `make demo` and `make test`.
# They create the venvs they need with pinned packages (scripts/make_venv.py; wheels
# cached in ~/.cache/ddfa-blender/wheels or $DDFA_WHEEL_CACHE), prepare models/, then run.
# Second runs reuse what is there: the stamps below make set-up a no-op.
#
#   .venv       Python 3.11, numpy 1.x, bpy 4.2.23 (make demo, make test)
#   .venv-3.13  Python 3.13, numpy 2.x, bpy 5.3.0  (make test, make extension)

BOOTSTRAP ?= python3
PYTHON    ?= python3.11
VENV      := .venv
VENV313   := .venv-3.13
PY        := $(VENV)/bin/python
PY313     := $(VENV313)/bin/python
LOCKS     := requirements.lock requirements-dev.lock scripts/make_venv.py
SHARED    ?= ../shared
INPUT     ?= $(SHARED)/data/video/obama.mp4

.PHONY: demo test test-gui test-matrix extension bench models clean train-venv test-train bench-adapt ffmpeg

$(VENV)/.installed: $(LOCKS)
	$(BOOTSTRAP) scripts/make_venv.py $(VENV) --python 3.11

$(VENV313)/.installed: $(LOCKS)
	$(BOOTSTRAP) scripts/make_venv.py $(VENV313) --python 3.13

models/.ready: $(VENV)/.installed scripts/fetch_models.py ddfa_blender/core/model_setup.py
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

demo: models/.ready $(VENV)/.installed
	@test -e "$(INPUT)" || { echo "No sample video at $(INPUT): run make demo INPUT=path/to/clip.mp4"; exit 1; }
	@mkdir -p out
	$(PY) scripts/capture.py --input "$(INPUT)" --take out/demo.npz \
		--preview out/demo_preview.mp4 --output out/demo.blend

# ffmpeg makes the bad-input and memory footage at run time (Debian's package).
ffmpeg:
	@command -v ffmpeg >/dev/null || { apt-get update -qq && apt-get install -y -qq ffmpeg; }

# The whole suite on both Pythons (numpy 1.x and 2.x, the oldest and newest bpy).
test: models/.ready $(VENV)/.installed $(VENV313)/.installed ffmpeg
	$(PY) -m pytest -q tests
	$(PY313) -m pytest -q tests

# The Blender-layer tests (tests/test_blender_*.py, the headless capture -> bake -> retarget ->
# .blend run among them, and the other tests needing bpy) under each supported Blender's bpy
# module, one venv per version (.matrix/bpy-X; the two make test pins reuse .venv/.venv-3.13).
# Prints passed/failed/errors/skipped and seconds per version. MATRIX_BPY picks versions.
MATRIX_BPY ?= 4.2.23 4.5.15 5.0.1 5.2.3 5.3.0

test-matrix: models/.ready ffmpeg
	$(BOOTSTRAP) scripts/test_matrix.py $(addprefix --bpy ,$(MATRIX_BPY))

# Extension zips in dist/ for Blender 4.2-5.0 (py311) and 5.1+ (py313), three platforms each,
# validated by the extension tooling of a bpy of the same Python. A Blender packaged with
# another Python (Debian's 4.3.2: 3.13, 5.2.2: 3.14): see scripts/build_extension.py and the
# README, e.g. `make extension-debian`.
extension: $(VENV)/.installed $(VENV313)/.installed
	$(PY) scripts/build_extension.py --python 3.11 --out dist
	$(PY313) scripts/build_extension.py --python 3.13 --out dist

# Linux zips for Debian's Blender 4.3.2 (Python 3.13) and 5.2.2 (Python 3.14).
extension-debian: $(VENV313)/.installed
	$(PY313) scripts/build_extension.py --python 3.13 --blender-min 4.2.0 --platform linux-x64 --out dist
	$(PY313) scripts/build_extension.py --python 3.14 --blender-min 4.2.0 --platform linux-x64 --out dist

# The add-on in real Blender windows (tests/gui): Debian's Blender 4.3.2 (Python 3.13) and
# 5.2.2 LTS (Python 3.14), each in a chroot under Xvfb (../shared/tools/real_blender; the
# tests build or check the chroots, about 1.5 GB and a few minutes each the first time), the
# linux zip for its Python installed with Blender's own command, then driven with real input.
# Needs root. GUI_BLENDERS picks (default both); GUI_DOCS=1 refreshes docs/gui_*.png.
GUI_BLENDERS ?= 4.3 5.2
GUI_ZIPS     := build/gui/zips
GUI_PYTHONS   = $(subst 5.2,3.14,$(subst 4.3,3.13,$(GUI_BLENDERS)))
test-gui: $(VENV)/.installed $(VENV313)/.installed ffmpeg
	rm -rf $(GUI_ZIPS)
	for python in $(GUI_PYTHONS); do \
		$(PY313) scripts/build_extension.py --python $$python --blender-min 4.2.0 --platform linux-x64 \
			--out $(GUI_ZIPS) || exit 1; \
	done
	DDFA_GUI=1 DDFA_GUI_ZIPS=$(GUI_ZIPS) DDFA_GUI_BLENDERS="$(GUI_BLENDERS)" DDFA_GUI_DOCS=$(GUI_DOCS) \
		$(PY) -m pytest -q tests/gui

bench: models/.ready $(VENV)/.installed ffmpeg
	$(PY) benchmarks/bench_capture.py
	$(PY) benchmarks/bench_stability.py
	$(PY) benchmarks/bench_bake.py
	$(PY) benchmarks/bench_live.py
	$(PY) benchmarks/bench_memory.py
	$(PY) benchmarks/bench_accuracy.py
	$(PY) benchmarks/bench_fidelity.py

clean:
	rm -rf $(VENV) $(VENV313) $(TRAIN_VENV) .matrix models out dist

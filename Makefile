# Two commands from a fresh clone:  `make demo`  and  `make test`.
# Both create .venv/ on first use and install what is missing; later runs skip straight to the work.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: install demo test clean-demo

install: $(STAMP)

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# open3d needs libusb at import time; install it from Debian when absent (root or sudo).
	@if command -v apt-get >/dev/null && ! ldconfig -p 2>/dev/null | grep -q libusb-1.0; then \
	  echo "[install] libusb-1.0-0 (needed by open3d)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  ($$SUDO apt-get install -y -qq libusb-1.0-0 >/dev/null 2>&1 || \
	   ($$SUDO apt-get update -qq >/dev/null && $$SUDO apt-get install -y -qq libusb-1.0-0 >/dev/null)) || \
	  echo "[install] warning: could not install libusb-1.0-0; mesh export will be unavailable"; \
	fi
	@# A plain `pip install torch` pulls a multi-GB CUDA build: take the CPU build when there is no GPU.
	@if ! $(PY) -c "import torch" 2>/dev/null; then \
	  if command -v nvidia-smi >/dev/null 2>&1; then $(PIP) install -q torch; \
	  else echo "[install] torch (CPU build)"; \
	    $(PIP) install -q "torch==2.13.0+cpu" 2>/dev/null || \
	    $(PIP) install -q torch --index-url https://download.pytorch.org/whl/cpu; fi; \
	fi
	@echo "[install] requirements.txt into $(VENV)"
	@$(PIP) install -q -r requirements.txt
	@touch $(STAMP)

demo: install
	$(PY) -m utils.demo

test: install
	$(PY) -m pytest -q tests

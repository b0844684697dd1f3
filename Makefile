# Two commands from a fresh clone:  `make demo`  and  `make test`.
# Both create .venv/ on first use and install what is missing; later runs skip straight to the work.
PYTHON ?= python3
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
# pip's notes about local package mirrors that lack a package are noise here
QUIET_PIP := grep -v "is ignored: it is neither a file nor a directory" || true
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: install demo test clean-demo chromium capture

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
	@$(PIP) install -q -r requirements.txt 2>&1 | { $(QUIET_PIP); }
	@touch $(STAMP)

# The demo: a procedural scene (no download), a short CPU-sized training run, a turntable video,
# its metrics and a colored mesh. These are plain commands: copy them for your own scenes.
DEMO_FLAGS ?= --img_wh 64 64 --net_depth 4 --net_width 64 --N_samples 32 --N_importance 32 \
	--lr 2e-3 --noise_std 0 --max_steps 800 --val_every 1 --val_num 4

demo: install
	$(PY) -m datasets.demo_scene data/demo
	$(PY) train.py --dataset_name blender --root_dir data/demo --exp_name demo $(DEMO_FLAGS)
	$(PY) eval.py --ckpt_path ckpts/demo/last.ckpt --scene_name demo --split test --fps 20
	$(PY) extract_mesh.py --ckpt_path ckpts/demo/last.ckpt --scene_name demo --N_grid 96 --n_views 10 \
		--x_range -1.1 1.1 --y_range -1.1 1.1 --z_range -0.8 0.8 --sigma_threshold 5
	@echo "demo done: results/blender/demo/test/ (demo.gif, demo.mp4, metrics.json), results/blender/demo/demo.ply, logs/demo, ckpts/demo"
	@echo "look around: $(PY) viewer.py --ckpt_path ckpts/demo/last.ckpt --mesh results/blender/demo/demo.ply  (then open http://localhost:7007)"

# Your own clip (or folder of photos) to a model, a video, a mesh and OUT/report.html in one command:
#   make capture VIDEO=clip.mp4 [OUT=captures/clip] [MINUTES=15]
MINUTES ?= 15
capture: install
	$(if $(VIDEO),,$(error usage: make capture VIDEO=clip.mp4 [OUT=captures/NAME] [MINUTES=15]))
	$(PY) capture.py $(VIDEO) --out $(or $(OUT),captures/$(basename $(notdir $(VIDEO)))) --minutes $(MINUTES)

test: install chromium
	$(PY) -m pytest -q --durations=15 tests

# The viewer's browser test needs Chromium; install it from Debian when possible (the test skips without it).
chromium:
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null; then \
	  echo "[install] chromium (for the viewer's browser test)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  ($$SUDO apt-get install -y -qq chromium >/dev/null 2>&1 || \
	   ($$SUDO apt-get update -qq >/dev/null && $$SUDO apt-get install -y -qq chromium >/dev/null)) || \
	  echo "[install] warning: could not install chromium; the viewer's browser test will be skipped"; \
	fi

clean-demo:
	rm -rf data/demo ckpts/demo logs/demo results/blender/demo

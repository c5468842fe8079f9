# mmg-live: `make test` and `make demo` set up everything on a fresh Debian/Ubuntu machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
APT_PACKAGES := libportaudio2 libsndfile1 pulseaudio pulseaudio-utils libasound2-plugins socat \
	xvfb xauth libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxkbcommon-x11-0 libegl1 libgl1 \
	libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-image0 libdbus-1-3 \
	libfontconfig1 imagemagick time

.PHONY: test demo venv system-deps bench clean results default-model

system-deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q "install ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "Installing Debian packages: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "Missing Debian packages. Run:"; echo "  sudo apt-get install -y $$missing"; exit 1; \
	  fi; \
	fi

# torch with its CUDA libraries makes the venv about 6.3 GB; say so before pip runs out of room.
VENV_MIN_FREE_GB := 7

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	@free=$$(df -Pk . | awk 'NR==2 {print int($$4 / 1048576)}'); \
	if [ ! -e $(STAMP) ] && [ "$$free" -lt $(VENV_MIN_FREE_GB) ]; then \
	  echo "mmg-live: installing the venv needs about $(VENV_MIN_FREE_GB) GB free in $$(pwd); only $$free GB left." >&2; \
	  echo "  Free some space (e.g. the decoded-clip cache: rm -r $${MMG_CACHE:-~/.cache/mmg-live})." >&2; \
	  exit 1; \
	fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --no-cache-dir --upgrade pip
	$(PY) -m pip install -q --no-cache-dir -r requirements.txt
	$(PY) -m pip install -q --no-cache-dir --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install -q --no-cache-dir --no-deps -e .
	touch $(STAMP)

venv: system-deps $(STAMP)

test: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest tests

demo: venv
	$(VENV)/bin/mmg-live --demo

bench: venv
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info

# Every row of docs/results.md (UTD-MHAD + FSDD from ../shared/data; two one-thread runs at a time, 56 min on a slow 2-core machine).
results: venv
	scripts/reproduce_utd.sh $${MMG_DATA:-../shared/data}/utd-mhad $${MMG_DATA:-../shared/data}/fsdd runs

default-model: venv
	scripts/make_default_model.sh $${MMG_DATA:-../shared/data}/utd-mhad $${MMG_DATA:-../shared/data}/fsdd runs

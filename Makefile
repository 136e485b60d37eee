# Two entry points for a fresh clone (see README.md):
#   make demo   set up .venv, simulate the default dataset, train and apply the model on it,
#               then the group level; open demo/out/sub-*.html and demo/out/group.html
#   make test   set up .venv (with the test extra) and run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   ?= demo

.PHONY: demo test lint clean report-screenshots bench bench-quick

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "bids-eeg2fmri needs Python >= 3.11 (set PYTHON=python3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# the demo's size: its held-out participants pass 0.5 of the noise ceiling in a few minutes
# (benchmarks/NOTES.md, "The demo's size"); 4 participants train, 05 and 06 are held out
DEMO_SIMULATE = --seed 0 --participants 6 --volumes 150
DEMO_TRAIN    = --train --holdout-label 05 06

demo: $(VENV)/.installed
	@test -d $(DEMO)/data/sub-06 || \
	  $(BIN)/bids-eeg2fmri-simulate $(DEMO)/data $(DEMO_SIMULATE) --overwrite
	$(BIN)/bids-eeg2fmri $(DEMO)/data $(DEMO)/out participant -w $(DEMO)/work $(DEMO_TRAIN)
	$(BIN)/bids-eeg2fmri $(DEMO)/data $(DEMO)/out group -w $(DEMO)/work
	@echo "Reports: $(DEMO)/out/sub-*.html and $(DEMO)/out/group.html (open them in a browser)"

test: $(VENV)/.installed
	$(BIN)/python -m pytest -n 2 --dist loadfile tests

lint: $(VENV)/.installed
	$(BIN)/ruff check bids_eeg2fmri tests benchmarks
	$(BIN)/ruff format --check bids_eeg2fmri tests benchmarks

# Every benchmark figure into benchmarks/RESULTS.md and results.json (under an hour on the
# 2-core CI kind; installs the original package in benchmarks/.original-venv, which needs
# network once); bench-quick: small sizes, a smoke run of the harness into benchmarks/quick/
bench: $(VENV)/.installed
	$(BIN)/python benchmarks/bench.py

bench-quick: $(VENV)/.installed
	$(BIN)/python benchmarks/bench.py --quick

# PNG screenshots of the demo's reports with headless Chromium (Debian package chromium)
report-screenshots:
	tools/report_screenshots.sh $(DEMO)/out $(DEMO)/screenshots

clean:
	rm -rf $(DEMO) work .pytest_cache

# The container test of .ci/run (root; podman and debootstrap come from apt): build the CPU
# image offline from a debootstrap base, run it read-only, non-root, without network
.PHONY: container-test lint-containers
container-test:
	tools/container_test.sh

# hadolint, actionlint, shellcheck and spython on the container and CI files
lint-containers: $(VENV)/.installed
	$(BIN)/python -m pytest -q tests/test_containers.py

# Thin wrappers around the asd-keras command-line program.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_DATA := data/synthetic/demo
DEMO_RUN := runs/demo/dense_ae
DEMO_CONFIG := experiments/dense_ae_baseline/demo.yaml

.PHONY: install demo test bench clean-demo

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

$(DEMO_DATA)/synth.json: | $(STAMP)
	$(PY) -m asd_keras synth --out $(DEMO_DATA) --layout dcase2022 --train 30 --test 10 --seed 0

# The demo owns its run folders, so it replaces them on every call (--force).
demo: $(STAMP) $(DEMO_DATA)/synth.json
	$(PY) -m asd_keras train --system dense_ae --data $(DEMO_DATA)/dev_data --out $(DEMO_RUN) --config $(DEMO_CONFIG) --verbose 2 --force
	$(PY) -m asd_keras score --run $(DEMO_RUN) --data $(DEMO_DATA)/dev_data --out $(DEMO_RUN)-scores --force
	$(PY) -m asd_keras evaluate --scores $(DEMO_RUN)-scores --data $(DEMO_DATA)/dev_data --force

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(PY) benchmarks/bench_pipeline.py

clean-demo:
	rm -rf $(DEMO_DATA) runs/demo

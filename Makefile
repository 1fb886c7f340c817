# Thin wrappers around the asd-keras command-line program.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_DATA := data/synthetic/demo
DEMO_RUN := runs/demo/dense_ae
DEMO_CONFIG := experiments/dense_ae_baseline/demo.yaml
WK_RUN := runs/demo/wilkinghoff
WK_CONFIG := experiments/wilkinghoff_demo/demo.yaml

# Paper experiments (Wilkinghoff & Kurth). Defaults are sized for 2 CPU cores
# on a 4-second synthetic set; override DATA, TRIALS, EPOCHS, EXP_OVERRIDES
# (key=value ...) for the full run on real data, and FORCE=--force to redo.
EXP_DATA := data/synthetic/angular_margin
DATA ?= $(EXP_DATA)/dev_data
TRIALS ?= 2
EPOCHS ?= 10
RISE_MASKS ?= 4000
EXP_OVERRIDES ?=
FORCE ?=

# GAN detectors (de Oliveira Neto et al.): DCASE 2020 layout synthetic data;
# GAN_DATA, EXP_OVERRIDES (key=value for every condition), FORCE=--force,
# SEARCH_BUDGET and PROTOCOL (holdout | test) may be overridden.
GAN_EXP_DATA := data/synthetic/gan_dcase2020
GAN_DATA ?= $(GAN_EXP_DATA)/dev_data
SEARCH_BUDGET ?= 6
PROTOCOL ?= holdout
GAN_SEARCH := experiments/gan_detectors/search

.PHONY: install demo docs test test-slow test-numerics test-package bench parity smoke-full gpu-check exp-pooling exp-residual-view exp-residual-view-noise exp-proxy-pretrained clean-demo exp-angular-margin exp-compactness exp-tsne exp-rise exp-gan exp-gan-search exp-proxy-ae exp-proxy-classification exp-proxy-contrastive exp-proxy-separation exp-proxy-report exp-eat-simam

# Shin & Lee's proxy-task study. PROXY_DATA: DCASE 2022 dev_data and eval_data
# (its training clips are the additional-training sections 03-05); by default a
# synthetic set of the same shape (7 machine types x 6 sections). The default
# sizes fit all four targets into 90 minutes on 2 CPU cores; FULL=1 runs the
# paper's (200 epochs, 10 s clips). PROXY_TRIALS, EXP_OVERRIDES, FORCE apply.
PROXY_EXP_DATA := data/synthetic/proxy_dcase2022
PROXY_DATA ?= $(PROXY_EXP_DATA)/dev_data $(PROXY_EXP_DATA)/eval_data
PROXY_OUT := experiments/proxy_tasks
PROXY_TRIALS ?= 1
ifeq ($(FULL),1)
PROXY_AE_SIZE :=
PROXY_RESNET_SIZE :=
else
PROXY_AE_SIZE := epochs=30 steps_per_execution=1
PROXY_RESNET_SIZE := --machine-types fan ToyCar epochs=10 clip_seconds=1.0 batch_size=16 lr_step_epochs=5
PROXY_SEPARATION_SIZE := --machine-types fan ToyCar epochs=4 clip_seconds=0.5 segment_seconds=0.25 lr_step_epochs=2 eval_mixtures=12 batch_size=1 gradient_accumulation_steps=1
endif
# Pretrained encoders (Table VI): random weights unless PRESET_DIR holds the
# converted checkpoints (asd-keras convert ... --out PRESET_DIR/<name>, the
# names of experiments/proxy_tasks/pretrained/config.yaml). On 2 CPUs the
# 1-second synthetic clips are encoded at their length (112 frames) instead
# of padded to 10 s; FULL=1 pads to 10 s as the paper.
PRESET_DIR ?=
PROXY_PRESETS := $(if $(PRESET_DIR),preset_dir=$(PRESET_DIR),)
ifeq ($(FULL),1)
PROXY_PRETRAINED_SIZE :=
else
PROXY_PRETRAINED_SIZE := clip_seconds=1.0 num_frames=112
endif
PROXY_MIXTURES := eval_mixtures_dir=$(PROXY_OUT)/separation/mixtures
PROXY_STUDIES := $(PROXY_OUT)/ae/results $(PROXY_OUT)/classification/results $(PROXY_OUT)/contrastive/results $(PROXY_OUT)/separation/results $(PROXY_OUT)/pretrained/results
PROXY_RUN = $(PY) experiments/proxy_tasks/run.py --data $(PROXY_DATA) --trials $(PROXY_TRIALS) $(FORCE)

# uv installs the pinned requirements in about 10 s where pip takes 1 min 43 s
# (2-core host, 2026-11-30); pip is the fallback when uv cannot reach an index.
# --compile-bytecode: uv writes no .pyc files by default, and where
# PYTHONDONTWRITEBYTECODE is set Python never writes them either, so every
# command compiled TensorFlow and Keras again: `import asd_keras.systems`
# took 13.3 s, and 5.3 s with the bytecode (2-core AMD EPYC, 2026-12-07).
UV := $(VENV)/bin/uv
UV_VERSION := 0.13.9
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet uv==$(UV_VERSION)
	$(UV) pip install --quiet --compile-bytecode --python $(PY) -r requirements.txt || $(PY) -m pip install --quiet -r requirements.txt
	$(UV) pip install --quiet --python $(PY) --no-deps -e . || $(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

$(DEMO_DATA)/synth.json: | $(STAMP)
	$(PY) -m asd_keras synth --out $(DEMO_DATA) --layout dcase2022 --train 30 --test 10 --seed 0

# The demo owns its run folders, so it replaces them on every call (--force).
demo: $(STAMP) $(DEMO_DATA)/synth.json
	$(PY) -m asd_keras train --system dense_ae --data $(DEMO_DATA)/dev_data --out $(DEMO_RUN) --config $(DEMO_CONFIG) --verbose 2 --force
	$(PY) -m asd_keras score --run $(DEMO_RUN) --data $(DEMO_DATA)/dev_data --out $(DEMO_RUN)-scores --force
	$(PY) -m asd_keras evaluate --scores $(DEMO_RUN)-scores --data $(DEMO_DATA)/dev_data --force
	$(PY) -m asd_keras train --system wilkinghoff --data $(DEMO_DATA)/dev_data --out $(WK_RUN) --config $(WK_CONFIG) --verbose 2 --force
	$(PY) -m asd_keras score --run $(WK_RUN) --data $(DEMO_DATA)/dev_data --out $(WK_RUN)-scores --force
	$(PY) -m asd_keras evaluate --scores $(WK_RUN)-scores --data $(DEMO_DATA)/dev_data --force
	@echo "dense AE:    $$(cat $(DEMO_RUN)-scores/evaluation/official_score.json)"
	@echo "wilkinghoff: $$(cat $(WK_RUN)-scores/evaluation/official_score.json)"

$(EXP_DATA)/synth.json: | $(STAMP)
	$(PY) -m asd_keras synth --out $(EXP_DATA) --layout dcase2022 --seconds 4 --train 20 --target-train 3 --test 6 --seed 1

exp-angular-margin: $(STAMP) $(EXP_DATA)/synth.json
	$(PY) -m asd_keras study --config experiments/angular_margin/config.yaml --data $(DATA) --out experiments/angular_margin/results --trials $(TRIALS) --epochs $(EPOCHS) $(FORCE) $(EXP_OVERRIDES)

exp-compactness: $(STAMP) $(EXP_DATA)/synth.json
	$(PY) experiments/compactness_curves/run.py --data $(DATA) --epochs $(EPOCHS) $(FORCE) $(EXP_OVERRIDES)

exp-tsne: $(STAMP)
	$(PY) experiments/tsne_embeddings/run.py $(FORCE)

exp-rise: $(STAMP) $(EXP_DATA)/synth.json
	$(PY) experiments/rise_maps/run.py --data $(DATA) --epochs $(EPOCHS) --masks $(RISE_MASKS) $(FORCE) $(EXP_OVERRIDES)

$(GAN_EXP_DATA)/synth.json: | $(STAMP)
	$(PY) -m asd_keras synth --out $(GAN_EXP_DATA) --layout dcase2020 --seconds 10 --train 19 --target-train 1 --test 5 --seed 2

exp-gan: $(STAMP) $(GAN_EXP_DATA)/synth.json
	$(PY) experiments/gan_detectors/run.py --data $(GAN_DATA) $(FORCE) $(EXP_OVERRIDES)

# Random search over a slice of Table 3 for GANomaly and Skip-GANomaly, then
# Tables 6-7 with the per-machine choices (results-search/).
exp-gan-search: $(STAMP) $(GAN_EXP_DATA)/synth.json
	$(PY) -m asd_keras search --system ganomaly --space experiments/gan_detectors/search_small.yaml --data $(GAN_DATA) --out $(GAN_SEARCH)/ganomaly-$(PROTOCOL) --budget $(SEARCH_BUDGET) --protocol $(PROTOCOL) $(FORCE)
	$(PY) -m asd_keras search --system skip_ganomaly --space experiments/gan_detectors/search_small.yaml --data $(GAN_DATA) --out $(GAN_SEARCH)/skip_ganomaly-$(PROTOCOL) --budget $(SEARCH_BUDGET) --protocol $(PROTOCOL) $(FORCE)
	$(PY) experiments/gan_detectors/run.py --data $(GAN_DATA) --out experiments/gan_detectors/results-search-$(PROTOCOL) --selection GANomaly=$(GAN_SEARCH)/ganomaly-$(PROTOCOL) --selection SKIP-GANomaly=$(GAN_SEARCH)/skip_ganomaly-$(PROTOCOL) $(FORCE) $(EXP_OVERRIDES)

# The documentation site (mkdocs.yml): strict, so a broken link, a missing
# page or a docstring griffe cannot parse fails the build; no network needed.
# The CLI reference, the API pages and the benchmark tables are generated
# at build time (tools/mkdocs_hooks.py).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 PYTHONPATH=. $(VENV)/bin/mkdocs build --strict --site-dir site

# tools/check_layers.py first: the packages import downward only, without
# import circles (docs/architecture.md); it reads the sources, in a second.
# --dist loadfile: each test module runs on one worker, so its module-scoped
# fixtures (trained tiny models) are built once, not once per worker.
# `make test` is the everyday suite (at most 10 minutes on a slow 2-core
# CPU); `make test-slow` runs the tests marked `slow`: whole programs end to
# end (every system's SavedModel against `score`, `make gpu-check` with and
# without `--smoke`, a training command's whole output,
# a whole proxy study in this process and in fresh ones, `asd-keras study`,
# the GAN search, Residual View and separation experiments end to end, two
# deterministic trainings in parallel processes, a training on two logical CPUs
# with oneDNN off, gradient accumulation's exact updates), each also
# covered piece by piece in `make test`. CI (.ci/run) runs both.
PYTEST_N := $(PY) -m pytest -q -p no:cacheprovider -n 2 --dist loadfile
test: $(STAMP)
	$(PY) tools/check_layers.py
	$(PYTEST_N) -m "not parity and not package and not slow"

test-slow: $(STAMP)
	$(PYTEST_N) -m "slow and not parity and not package"

# The wheel, built and installed into a new venv outside the source tree,
# then `asd-keras --version`, `systems` and a tiny train -> score -> export
# (tests/test_package.py; a few minutes, and uv may reach the package index).
test-package: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -m package tests/test_package.py

# The same suite under a second numeric setting: oneDNN off (asd_keras turns
# it on by default, so this flips it on every CPU) and one intra-op thread
# (other reduction orders). A test that pins a trained value tighter than its
# spread across CPUs fails here on any machine. Run it before committing a
# change that touches numbers. It includes the `slow` tests.
test-numerics: $(STAMP)
	$(PY) tools/check_layers.py
	TF_ENABLE_ONEDNN_OPTS=0 TF_NUM_INTRAOP_THREADS=1 OMP_NUM_THREADS=1 \
		$(PYTEST_N) -m "not parity and not package"

# Parity of the BEATs and EAT ports with the PyTorch references (reference
# methods.md §H): installs torch (CPU wheel), speechbrain and torchaudio into
# the venv, then checks every layer at full size on a 10 s clip (1e-4) and
# runs the torch-only tests. torchaudio from the index is a CUDA build that
# does not load beside the CPU torch; without its C++ extension it imports
# and its Kaldi fbank (pure PyTorch) works.
PARITY_STAMP := $(VENV)/.parity-stamp
PARITY_OUT ?= experiments/encoder_parity/results

$(PARITY_STAMP): $(STAMP)
	$(PY) -m pip install --quiet torch==2.13.0 speechbrain==1.1.2 torchaudio==2.11.1
	rm -f $(VENV)/lib/python*/site-packages/torchaudio/lib/*.so
	touch $(PARITY_STAMP)

parity: $(PARITY_STAMP)
	$(PY) tools/encoder_parity.py check --size full --out $(PARITY_OUT)/parity_full.json
	$(PY) -m pytest -q -p no:cacheprovider -m parity tests/test_encoder_parity.py

bench: $(STAMP)
	$(PY) benchmarks/bench_pipeline.py
	$(PY) benchmarks/bench_dense_ae.py
	$(PY) benchmarks/bench_dense_ae_step.py
	$(PY) benchmarks/bench_wilkinghoff.py
	$(PY) benchmarks/bench_gan.py
	$(PY) benchmarks/bench_encoders.py

# Every FULL=1 configuration at paper size for a few graph-mode training steps
# (benchmarks/smoke_full.py): parameters, trace time, s/step, peak RSS, FLOPs
# and the projected wall time of the whole paper run, into
# benchmarks/results/smoke_full.csv and .md. SMOKE=NAME ... runs some.
SMOKE ?=
smoke-full: $(STAMP)
	$(PY) benchmarks/smoke_full.py $(SMOKE)

# The same smoke plus the demo's two trainings on a GPU (exits 0 without
# one); GPU_CHECK_ARGS=--smoke runs it at tiny sizes on the CPU.
GPU_CHECK_ARGS ?=
gpu-check: $(STAMP)
	$(PY) benchmarks/gpu_check.py $(GPU_CHECK_ARGS)

clean-demo:
	rm -rf $(DEMO_DATA) $(EXP_DATA) $(GAN_EXP_DATA) runs/demo

$(PROXY_EXP_DATA)/synth.json: | $(STAMP)
	$(PY) -m asd_keras synth --out $(PROXY_EXP_DATA) --layout dcase2022 --machines fan gearbox bearing slider ToyCar ToyTrain valve --seconds 1 --train 2 --target-train 1 --test 2 --eval --seed 3

exp-proxy-ae: $(STAMP) $(PROXY_EXP_DATA)/synth.json
	$(PROXY_RUN) --config $(PROXY_OUT)/ae/config.yaml --out $(PROXY_OUT)/ae/results $(PROXY_AE_SIZE) $(EXP_OVERRIDES)

exp-proxy-classification: $(STAMP) $(PROXY_EXP_DATA)/synth.json
	$(PROXY_RUN) --config $(PROXY_OUT)/classification/config.yaml --out $(PROXY_OUT)/classification/results $(PROXY_RESNET_SIZE) $(EXP_OVERRIDES)

exp-proxy-contrastive: $(STAMP) $(PROXY_EXP_DATA)/synth.json
	$(PROXY_RUN) --config $(PROXY_OUT)/contrastive/config.yaml --out $(PROXY_OUT)/contrastive/results $(PROXY_RESNET_SIZE) $(EXP_OVERRIDES)

exp-proxy-separation: $(STAMP) $(PROXY_EXP_DATA)/synth.json
	$(PROXY_RUN) --config $(PROXY_OUT)/separation/config.yaml --out $(PROXY_OUT)/separation/results $(PROXY_SEPARATION_SIZE) $(PROXY_MIXTURES) $(EXP_OVERRIDES)
	$(PY) experiments/proxy_tasks/separation/table4.py --study $(PROXY_OUT)/separation/results --out $(PROXY_OUT)/separation/results --force

# Table VII, Figs. 2-5 and the three-stage report from the four studies.
exp-proxy-pretrained: $(STAMP) $(PROXY_EXP_DATA)/synth.json
	$(PROXY_RUN) --config $(PROXY_OUT)/pretrained/config.yaml --out $(PROXY_OUT)/pretrained/results $(PROXY_PRETRAINED_SIZE) $(PROXY_PRESETS) cache_dir=$(PROXY_OUT)/pretrained/embeddings $(EXP_OVERRIDES)

# Training-free pooling table (beyond the papers): encoders x pooling x kNN
# (K = 1) without and with local density, on a 1-second synthetic set.
# PRESET_DIR (converted beats_iter3 and eat_base) replaces the random weights.
POOLING_EXP_DATA := data/synthetic/pooling
POOLING_DATA ?= $(POOLING_EXP_DATA)/dev_data
POOLING_FROZEN ?= clip_seconds=1.0 num_frames=112 cache_dir=experiments/pooling/embeddings

$(POOLING_EXP_DATA)/synth.json: | $(STAMP)
	$(PY) -m asd_keras synth --out $(POOLING_EXP_DATA) --layout dcase2022 --machines fan valve ToyCar --seconds 1 --train 12 --target-train 2 --test 4 --seed 5

exp-pooling: $(STAMP) $(POOLING_EXP_DATA)/synth.json
	$(PY) experiments/pooling/run.py --data $(POOLING_DATA) --out experiments/pooling/results $(if $(PRESET_DIR),--preset-dir $(PRESET_DIR),) --frozen $(POOLING_FROZEN) $(FORCE) $(EXP_OVERRIDES)

# Residual View and PRPS (Kim et al., DCASE 2026): Tables 2-3 and Figures 1-2
# on a two-channel (near, far) synthetic set of the seven DCASE 2022 machine
# types, 3-second clips, a noisy hall (background 1.5 times the machine's level
# at the near microphone, 2.4 times in the target domain). PRESET_DIR (converted beats_iter3 and eat_base)
# replaces the random weights; RV_DATA takes real DCASE 2026 dev data.
RV_EXP_DATA := data/synthetic/residual_view
RV_DATA ?= $(RV_EXP_DATA)/dev_data/raw
RV_FROZEN ?= clip_seconds=3.0 num_frames=304 cache_dir=experiments/residual_view/embeddings

$(RV_EXP_DATA)/synth.json: | $(STAMP)
	$(PY) -m asd_keras synth --out $(RV_EXP_DATA) --layout dcase2026 --machines fan gearbox bearing slider ToyCar ToyTrain valve --seconds 3 --train 40 --target-train 10 --test 10 --background-gain 1.5 --seed 7

exp-residual-view: $(STAMP) $(RV_EXP_DATA)/synth.json
	$(PY) experiments/residual_view/run.py --data $(RV_DATA) --out experiments/residual_view/results $(if $(PRESET_DIR),--preset-dir $(PRESET_DIR),) --frozen $(RV_FROZEN) $(FORCE) $(EXP_OVERRIDES)

# Enhanced-feature EAT (Zhong et al., DCASE 2024): filter-bank (o/m/g-FB) and
# SimAM (none/global/local/customised) ablations of the eat_simam system on a
# synthetic DCASE 2023-2025 layout set of the seven 2024 dev machine types.
# Default: the CPU-sized eat_small from random weights on 3-second clips;
# FULL=1: EAT-base on 10-second clips of DCASE 2024 dev size (990 + 10 training
# clips, 200 test clips per section). PRESET_DIR (a converted eat_base), EAT_DATA
# (real DCASE 2024 dev_data/raw), EXP_OVERRIDES and FORCE apply.
ifeq ($(FULL),1)
EAT_EXP_DATA := data/synthetic/eat_simam_full
EAT_SYNTH := --seconds 10 --train 990 --target-train 10 --test 50
EAT_FULL := --full
else
EAT_EXP_DATA := data/synthetic/eat_simam
EAT_SYNTH := --seconds 3 --train 90 --target-train 10 --test 10
EAT_FULL :=
endif
EAT_DATA ?= $(EAT_EXP_DATA)/dev_data/raw
EAT_OUT ?= experiments/eat_simam/results$(if $(filter 1,$(FULL)),_full,)

$(EAT_EXP_DATA)/synth.json: | $(STAMP)
	$(PY) -m asd_keras synth --out $(EAT_EXP_DATA) --layout dcase2023 --machines fan gearbox bearing slider ToyCar ToyTrain valve $(EAT_SYNTH) --seed 11

exp-eat-simam: $(STAMP) $(EAT_EXP_DATA)/synth.json
	$(PY) experiments/eat_simam/run.py --data $(EAT_DATA) --out $(EAT_OUT) $(EAT_FULL) $(if $(PRESET_DIR),--preset-dir $(PRESET_DIR),) $(FORCE) $(EXP_OVERRIDES)

# Beyond the report: Residual View against the hall's level (log-mel
# statistics; synthetic sets with background 0.5, 1.5 and 3 times the machine).
exp-residual-view-noise: $(STAMP)
	$(PY) experiments/residual_view/noise_levels.py --out experiments/residual_view/results

exp-proxy-report: $(STAMP)
	$(PY) -m asd_keras proxy-report --study $(PROXY_STUDIES) --out $(PROXY_OUT)/report/results --force
	$(PY) experiments/proxy_tasks/compare.py --study $(PROXY_STUDIES) --report $(PROXY_OUT)/report/results --out $(PROXY_OUT)/report/results/comparison.md

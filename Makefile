# Two commands do all the set-up on a fresh machine:
#   make test   installs the package with its test extras and runs the test suite
#   make book   installs the book extras, runs the six notebooks headless, builds the HTML book
# and one to work on the notebooks:
#   make lab    installs the book extras and a Jupyter kernel named $(KERNEL), starts JupyterLab on notebooks/
#   make study  the ablation study (variants x SEEDS) into $(STUDY_RESULTS), which notebook 06 renders
#   make readme README.md's results table, generated from book/results/ablation/
# On one GPU: `make book PRESET=gpu-demo DEVICE=cuda` (the book at the gpu-demo preset) and
# `make gpu-check` (tests and benchmarks within about eight, results into $(GPU_RESULTS); exits with
# status 2 without CUDA).
# Parameters forwarded to the notebooks: DATASET, DATA_ROOT, PRESET, DEVICE, EPOCHS.
PYTHON   ?= python3
DATASET  ?= sysu
PRESET   ?= cpu-demo
DEVICE   ?= auto
DATA_ROOT ?=
EPOCHS   ?=
PYTEST_ARGS ?=
KERNEL   ?= djanet
LAB_ARGS ?=
GPU_CHECK_ARGS ?=
SEEDS    ?= 0 1 2 3 4
JOBS     ?= 2
STUDY_RESULTS ?= book/results/ablation
# gpu-check's logs, JSON and summary.md; $OUT when it is set (as benchmarks/gpu_check.py reads it)
GPU_RESULTS ?= $(if $(OUT),$(OUT),book/results/gpu)

NB_PARAMS = -p dataset $(DATASET) -p preset $(PRESET) -p device $(DEVICE) \
            $(if $(DATA_ROOT),-p data_root $(abspath $(DATA_ROOT))) $(if $(EPOCHS),-p epochs $(EPOCHS))
NOTEBOOKS = $(sort $(wildcard notebooks/0*.ipynb))

.PHONY: install install-test install-book test test-fast mutation book notebooks html browser-check urls lab study readme bench gpu-check clean

install:
	$(PYTHON) -m pip install -q -e .

install-test:
	$(PYTHON) -m pip install -q -e ".[test]"

install-book:
	$(PYTHON) -m pip install -q -e ".[book]"

test: install-test
	$(PYTHON) -m pytest $(PYTEST_ARGS)

test-fast: install-test
	$(PYTHON) -m pytest -m "not slow" $(PYTEST_ARGS)

# Mutants of djanet/align.py, mamba.py, losses.py and gap.py against the fast tests (mutmut, configured
# in pyproject.toml; under an hour on a 2-core CPU), the score into book/results/mutation/score.json.
mutation: install-test
	$(PYTHON) -m pip install -q "mutmut==3.3.1"
	rm -rf mutants
	@# the console script, not python -m: that would put this folder, unmutated, first on the import path
	PYTEST_ADDOPTS="-m 'not slow' -p no:cacheprovider" mutmut run --max-children $(JOBS) || true
	$(PYTHON) benchmarks/mutation_score.py --out book/results/mutation/score.json

urls:  # the repository address of pyproject.toml, stamped into the notebooks and _config.yml
	$(PYTHON) book/_ext/repository_url.py

notebooks: install-book urls
	mkdir -p book/executed
	@for nb in $(NOTEBOOKS); do \
	  echo "== $$nb"; start=$$(date +%s); \
	  $(PYTHON) -m papermill $$nb book/executed/$$(basename $$nb) --cwd notebooks $(NB_PARAMS) || exit 1; \
	  echo "   $$(( $$(date +%s) - start )) s"; \
	done

html: install-book urls
	@# jupyter-book 1.x has no `python -m jupyter_book`; call its CLI through this interpreter.
	$(PYTHON) -c 'import sys; from jupyter_book.cli.main import main; sys.exit(main(prog_name="jupyter-book"))' \
	  build . -W -n --keep-going
	$(PYTHON) book/_ext/check_html.py _build/html

book: notebooks html

# Every page of the built book opened offline in headless Chromium (Debian's `chromium`): equations
# typeset by the bundled MathJax, images loaded, no raw glue keys.
browser-check:
	$(PYTHON) book/_ext/check_browser.py _build/html

lab: install-book
	$(PYTHON) -m ipykernel install --user --name $(KERNEL) --display-name "Python ($(KERNEL))"
	$(PYTHON) -m jupyterlab --ServerApp.root_dir=notebooks --MappingKernelManager.default_kernel_name=$(KERNEL) $(LAB_ARGS)

# Train-or-load every (variant, seed) run under runs/study/ (an interrupted study resumes), then write
# study.csv, summary.csv and provenance.json to $(STUDY_RESULTS) for the book. JOBS runs train at once,
# the CPU cores shared out among them (JOBS=2 on 2 cores: one torch thread each, and the single-core
# parts, data loading and evaluation, of two runs overlap); JOBS=1 on one GPU. Then README.md's
# results table is generated again from book/results/ablation/.
study: install-book
	$(PYTHON) -m djanet study --dataset $(DATASET) --preset $(PRESET) --seeds $(SEEDS) --jobs $(JOBS) \
	  --gpu $(DEVICE) --out-dir runs/study/$(DATASET)-$(PRESET) --results $(STUDY_RESULTS) \
	  $(if $(DATA_ROOT),--data-root $(DATA_ROOT)) $(if $(EPOCHS),--epochs $(EPOCHS))
	$(MAKE) readme

readme:  # README.md's results block, from book/results/ablation/ (`python book/_ext/readme_results.py --check` only compares)
	$(PYTHON) book/_ext/readme_results.py

bench: install-test
	$(PYTHON) benchmarks/bench_metrics.py
	$(PYTHON) benchmarks/bench_model.py --small
	$(PYTHON) benchmarks/bench_data.py
	$(PYTHON) benchmarks/bench_train.py

gpu-check: install-test  # every GPU measurement in ~8 min, results in $(GPU_RESULTS); install ".[mamba]" first for the fused kernel
	$(PYTHON) benchmarks/gpu_check.py --out $(GPU_RESULTS) $(GPU_CHECK_ARGS)

clean:
	rm -rf _build book/executed .pytest_cache

# Two commands do all the set-up (README): `make book` and `make test`. Both create or reuse .venv.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: book test test-fast venv chapter clean-book

# Reinstall only when the requirements or the package metadata change.
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

book: $(STAMP)
	$(VENV)/bin/jupyter-book build . -W -n --keep-going
	@echo "The book is at $(CURDIR)/_build/html/index.html"

NBVAL := --nbval --nbval-sanitize-with book/nbval_sanitize.cfg --nbval-cell-timeout 1200
# Chapters that train networks while they run. Their float trajectories depend on the CPU's kernels, so
# their trajectory-dependent outputs are checked as claims with thresholds (nbval-ignore-output on the
# tables), and the suite re-runs them on torch's baseline kernels to show the claims hold off this CPU too.
TRAINING_CHAPTERS := book/neural_toy.ipynb book/rid_theory.ipynb

# Unit tests, then every chapter re-executed by nbval against its stored outputs (chapters pin
# their own thread counts, so the outputs do not depend on this machine's cores), then the training
# chapters again on a second kernel path.
# --dist loadfile: a notebook's cells share one kernel, so each file runs whole on one pytest-xdist worker.
test: $(STAMP)
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -n 2 --dist loadfile tests book $(NBVAL)
	ATEN_CPU_CAPABILITY=default $(PY) -m pytest -n 2 --dist loadfile $(TRAINING_CHAPTERS) $(NBVAL)

# The edit-test loop: the architecture contracts and the unit tests, without subprocess grids or chapters.
test-fast: $(STAMP)
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -n 2 -m "not grid" tests

# Re-run one chapter with papermill: in place by default (the stored outputs must come from the default
# parameters), or into OUT, e.g. `make chapter NB=pid_primer.ipynb P="-p unit nats" OUT=/tmp/nats.ipynb`.
chapter: $(STAMP)
	test -n "$(NB)" || (echo "usage: make chapter NB=<notebook in book/> [P='-p name value ...']" && false)
	cd book && ../$(VENV)/bin/papermill --no-progress-bar --cwd . $(NB) $(abspath $(or $(OUT),book/$(NB))) $(P)

clean-book:
	rm -rf _build

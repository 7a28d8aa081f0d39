# Two commands for a fresh clone (see README):  make report   and   make test
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
NOTEBOOKS := $(sort $(wildcard notebooks/0*.ipynb))

.PHONY: setup report test bench

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -r requirements.txt
	touch $@

# Execute every notebook in place on the full data, in order; writes plots/, data/splits/, models/.
report: setup
	@for nb in $(NOTEBOOKS); do \
		echo "== $$nb"; \
		$(BIN)/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=-1 $$nb || exit 1; \
	done

# Unit tests, then every notebook re-run by nbval in fast mode (outputs to a temporary folder).
test: setup
	$(BIN)/python -m pytest

bench: setup
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

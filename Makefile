# Two commands for a fresh clone (see README):  make report   and   make test
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
NOTEBOOKS := $(sort $(wildcard notebooks/0*.ipynb))

.PHONY: setup report test bench export mutation

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -r requirements.txt
	touch $@

# Execute every notebook in place on the full data, in order; writes plots/, data/splits/, models/.
# Progress bars are off (TQDM_DISABLE): in a committed notebook they are frozen widgets. Prints
# each notebook's minutes and the total, the figure the README's Speed section quotes. The export
# is called directly, not through $(MAKE), so `make -n report` only prints the commands.
report: setup
	@start=$$(date +%s); for nb in $(NOTEBOOKS); do \
		echo "== $$nb"; t0=$$(date +%s); \
		TQDM_DISABLE=1 $(BIN)/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=-1 $$nb || exit 1; \
		echo "   $$nb: $$(( ($$(date +%s) - t0) / 60 )) min $$(( ($$(date +%s) - t0) % 60 )) s"; \
	done; \
	$(BIN)/python -m ekg export || exit 1; \
	echo "== make report: $$(( ($$(date +%s) - start) / 60 )) min $$(( ($$(date +%s) - start) % 60 )) s on $$(nproc) cores"

# Unit tests, then every notebook re-run by nbval in fast mode (outputs to a temporary folder).
test: setup
	$(BIN)/python -m pytest

bench: setup
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# report/: each notebook as standalone HTML (figures embedded) and report/report.html, all of them
# behind one contents list; fails, writing nothing, if a cell of the run raised an error.
export: setup
	$(BIN)/python -m ekg export

# Mutation testing with mutmut (not in CI: about an hour on two cores): each module the report's
# conclusions rest on, mutated in a scratch copy with its own narrow tests; summary in tests/MUTATION.md.
# MODULES=metrics alarms ... runs some of them (tests/mutation/run.py lists them).
mutation: setup
	$(BIN)/pip install -q -r requirements-dev.txt
	nice -n 19 $(BIN)/python tests/mutation/run.py $(MODULES)

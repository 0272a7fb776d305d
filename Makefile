# The two quick-start commands: `make run` and `make test`. Both build ./.venv from scratch when needed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint prereqs bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	mkdir -p var
	$(BIN)/consumer run -c config/local.yaml

lint: $(STAMP)
	$(BIN)/ruff check consumer tests bench
	$(BIN)/ruff format --check consumer tests bench
	$(BIN)/mypy

prereqs:
	bash scripts/test-prereqs.sh

# Four processes (pytest-xdist): the suite mostly waits on daemons, sockets and subprocesses
# (about 2.5 CPU-minutes in 6 minutes on two), so even two cores keep four busy.
test: prereqs lint
	$(BIN)/pytest -n 4

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var .mypy_cache .pytest_cache .ruff_cache .hypothesis

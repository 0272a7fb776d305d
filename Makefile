# The two quick-start commands: `make run` and `make test`. Both build ./.venv from scratch when needed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The RocketMQ 4.x binding (the `rocketmq4` extra) and the librocketmq source it is built from:
# a clone next to a copy of shared/ finds the tarball there; LIBROCKETMQ_SRC overrides it.
ROCKETMQ4 := $(VENV)/rocketmq4/.installed
LIBROCKETMQ_SRC ?= ../shared/vendor/rocketmq-client-cpp-7c8b7f8.tar.gz

.PHONY: run test lint prereqs bench clean rocketmq4

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(ROCKETMQ4): requirements-rocketmq4.txt $(STAMP)
	$(BIN)/pip install --quiet --no-deps --upgrade --target $(VENV)/rocketmq4 -r requirements-rocketmq4.txt
	touch $@

rocketmq4: $(ROCKETMQ4)

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
test: prereqs lint $(ROCKETMQ4)
	LIBROCKETMQ_SRC=$(LIBROCKETMQ_SRC) \
	CONSUMER_LIBROCKETMQ="$$(bash scripts/build-librocketmq.sh $(LIBROCKETMQ_SRC))" $(BIN)/pytest -n 4

bench: $(STAMP) $(ROCKETMQ4)
	bash scripts/bench-prereqs.sh
	CONSUMER_LIBROCKETMQ="$$(bash scripts/build-librocketmq.sh $(LIBROCKETMQ_SRC))" $(BIN)/python -m bench

clean:
	rm -rf $(VENV) var .mypy_cache .pytest_cache .ruff_cache .hypothesis

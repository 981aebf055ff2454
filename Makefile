# movierec: `make all` sets up, trains on ML-100K, archives, serves and shows example calls.
# `make help` lists every target.

SHELL := /bin/bash
# A recipe line that pipes (`... | tee report.md`) fails when any command of the pipe fails.
.SHELLFLAGS := -o pipefail -c
.DEFAULT_GOAL := help

VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
BIN     := $(VENV)/bin
DATASET ?= ml-100k
ARTIFACT ?= artifacts/$(DATASET)
TRAIN_ARGS ?=
MAR     := model_store/movierec.mar
# The same model for large requests, with its own workers, batching and queue (docs/operations.md).
BULK_MAR := model_store/movierec-bulk.mar
KEYS_PID := logs/keys.pid
# The page (docs/web.md): python -m web on 127.0.0.1:WEB_PORT, in front of TorchServe.
WEB_PORT ?= 8000
WEB_PID  := logs/web.pid
URL     ?= http://127.0.0.1:8080
# make loadtest: closed-loop Locust users, users started per second, run time (see docs/loadtesting.md).
USERS      ?= 16
SPAWN_RATE ?= 8
DURATION   ?= 30s
LOCUST_ARGS ?=
BENCH_ARGS ?=
SCALE_ARGS ?=
SOAK_ARGS ?=
ISOLATION_ARGS ?=

.PHONY: help all install install-serve check-java data train archive serve stop demo fuzz faults upgrade evaluate \
	test test-unit browser lint format clean loadtest soak knee bench scale isolation

help:  ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | \
	  awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

all: install archive serve  ## set up, train on ML-100K, build the .mar, start TorchServe and the page

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet pip==26.3
	$(BIN)/pip install --quiet -r requirements-dev.txt
	@# The project itself, editable; --no-deps because the pins above are the lock.
	$(BIN)/pip install --quiet --no-deps -e .
	@touch $@

# A server only: TorchServe, the handler's model code, the client and the page; no training,
# plots or load tests (requirements-serve.txt). Serve a .mar built elsewhere with it.
install-serve: check-java  ## create .venv with the serving packages only (a machine that only serves)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet pip==26.3
	$(BIN)/pip install --quiet -r requirements-serve.txt
	$(BIN)/pip install --quiet --no-deps -e .

install: check-java $(VENV)/.installed  ## create .venv: pinned dependencies and dev tools, movierec editable
	@# `source .venv/bin/activate` then makes a plain `torchserve --start` read config.properties
	@# (TorchServe's TS_CONFIG_FILE); the old line goes first, so a moved clone stays right.
	@sed -i '/# movierec: TS_CONFIG_FILE/d' $(VENV)/bin/activate
	@echo 'export TS_CONFIG_FILE="$(CURDIR)/config.properties"  # movierec: TS_CONFIG_FILE' \
	  >> $(VENV)/bin/activate

check-java:
	@command -v java >/dev/null || { echo "TorchServe needs Java 11+ on PATH." \
	  "Debian/Ubuntu: sudo apt-get install openjdk-17-jre-headless"; exit 1; }

data: $(VENV)/.installed  ## fetch the dataset (DATASET=ml-100k) into data/
	$(PY) -c "import logging; logging.basicConfig(level=logging.INFO); \
	  from train.data import fetch; print(fetch('$(DATASET)'))"

# What the artifact was trained with: rewritten only when DATASET, ARTIFACT or TRAIN_ARGS
# change, so that `make train TRAIN_ARGS=...` retrains and an unchanged call does nothing.
TRAINED_WITH := $(ARTIFACT).args
$(TRAINED_WITH): FORCE
	@mkdir -p $(dir $@)
	@echo '--dataset $(DATASET) --output $(ARTIFACT) $(TRAIN_ARGS)' | cmp -s - $@ \
	  || echo '--dataset $(DATASET) --output $(ARTIFACT) $(TRAIN_ARGS)' > $@

$(ARTIFACT)/weights.pt: $(VENV)/.installed $(TRAINED_WITH) $(wildcard model/*.py train/*.py train/*/*.py)
	$(PY) -m train --dataset $(DATASET) --output $(ARTIFACT) --quiet $(TRAIN_ARGS)

train: $(ARTIFACT)/weights.pt  ## train into artifacts/DATASET/ (TRAIN_ARGS="--epochs 5" passes options)

$(MAR) $(BULK_MAR) &: $(ARTIFACT)/weights.pt $(wildcard handler/*) $(wildcard model/*.py)
	$(PY) -m train.archive --artifact $(ARTIFACT) --export-path model_store

archive: $(MAR) $(BULK_MAR)  ## build model_store/movierec.mar and movierec-bulk.mar from the artifact

serve: check-java $(MAR) $(BULK_MAR)  ## start TorchServe, its key supervisor and the page (WEB_PORT=8000), call it
	@mkdir -p logs
	$(BIN)/torchserve --start --ts-config config.properties --ncs >> logs/torchserve.out 2>&1 \
	  || { tail -n 5 logs/torchserve.out; exit 1; }
	@# Renews the inference and management keys before they expire (docs/operations.md: "The key supervisor").
	@$(PY) -m client.keys --stop --pid-file $(KEYS_PID)
	nohup $(PY) -m client.keys --config config.properties --pid-file $(KEYS_PID) \
	  >> logs/keys.log 2>&1 < /dev/null &
	$(PY) -m client demo --url $(URL)
	@echo "Your own calls (see README and docs/api.md): token() { python3 -c 'import json;"\
	  "print(json.load(open(\"key_file.json\"))[\"inference\"][\"key\"])'; }"
	@# The page (docs/web.md); it reads the key from key_file.json at each call, like the client.
	@$(PY) -m web --stop --pid-file $(WEB_PID) >/dev/null
	nohup $(PY) -m web --port $(WEB_PORT) --artifact $(ARTIFACT) --pid-file $(WEB_PID) \
	  >> logs/web.log 2>&1 < /dev/null &
	@$(PY) -m web --wait --port $(WEB_PORT) || { tail -n 5 logs/web.log; exit 1; }

stop:  ## stop the page, TorchServe and its key supervisor
	-$(PY) -m web --stop --pid-file $(WEB_PID)
	-$(PY) -m client.keys --stop --pid-file $(KEYS_PID)
	-$(BIN)/torchserve --stop

demo: $(VENV)/.installed  ## example calls against the running server
	$(PY) -m client demo --url $(URL)

SEEDS ?= 0 1 2
fuzz: $(MAR)  ## 2,000 malformed + 500 valid requests at a private TorchServe: no 5xx allowed
	$(PY) -m loadtest.scenarios.fuzz --mar $(MAR)

faults: $(MAR)  ## kill a worker under Locust load: recovery time and failed requests
	$(PY) -m loadtest.scenarios.faults --mar $(MAR)

upgrade: $(MAR)  ## bring in a new model version under Locust load, switch to it, roll back
	$(PY) -m loadtest.scenarios.upgrade --mar $(MAR) --artifact $(ARTIFACT)

evaluate: $(VENV)/.installed  ## reports/DATASET.md, DATASET-newusers.md (fold-in RMSE, new-user ranking) over SEEDS
	$(PY) -m train.evaluate --dataset $(DATASET) --seeds $(SEEDS)
	@# The report replaces the committed one only when the run succeeds.
	$(PY) -m train.newusers --dataset $(DATASET) --preset full --ranking-preset fast --no-retrain \
	  --seeds $(SEEDS) --json reports/$(DATASET)-newusers.json | tee reports/$(DATASET)-newusers.md.part
	mv reports/$(DATASET)-newusers.md.part reports/$(DATASET)-newusers.md

loadtest: $(MAR)  ## Locust, headless, SLO-judged (USERS=16 SPAWN_RATE=8 DURATION=30s)
	$(PY) -m loadtest.run --url $(URL) --users $(USERS) --spawn-rate $(SPAWN_RATE) \
	  --duration $(DURATION) -- $(LOCUST_ARGS)

soak: DURATION = 75m
soak: USERS = 10
soak: $(MAR)  ## Locust mix past the keys' expiry, memory watched (DURATION=75m USERS=10): reports/soak/
	$(PY) -m loadtest.scenarios.soak --mar $(MAR) --duration $(DURATION) --users $(USERS) $(SOAK_ARGS)

knee: $(MAR)  ## step load until p99 breaks the SLO: highest rate within it
	$(PY) -m loadtest.run --url $(URL) --knee -- $(LOCUST_ARGS)

isolation: $(MAR) $(BULK_MAR)  ## light clients alone, beside bulk ones, overload, recovery: reports/isolation.md
	$(PY) -m loadtest.scenarios.isolation --mar $(MAR) $(ISOLATION_ARGS)

bench: $(ARTIFACT)/weights.pt  ## echo floor vs naive vs our handler, micro-benchmarks: reports/bench.md
	$(PY) -m loadtest.scenarios.bench --artifact $(ARTIFACT) $(BENCH_ARGS)

scale: $(VENV)/.installed  ## ML-25M-size .mar: size, start-up, worker RSS, top-10 latency: reports/scale.md
	$(PY) -m loadtest.scenarios.scale --out reports/scale.md $(SCALE_ARGS)

test: install browser  ## run unit, integration and browser tests (own TorchServe on free ports)
	$(PY) -m pytest

browser: $(VENV)/.installed  ## a Chromium for the browser tests (Debian's chromium, as root with apt)
	@$(PY) -m web.browser >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    echo "Installing Debian's chromium for the browser tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
	      >/dev/null; \
	  else $(PY) -m web.browser; exit 1; fi; }

test-unit: $(VENV)/.installed  ## run the tests that need no Java and no server (not `integration`)
	$(PY) -m pytest -m "not integration"

lint: $(VENV)/.installed  ## ruff lint and format check, mypy type check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(VENV)/.installed  ## apply ruff formatting and safe fixes
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:  ## remove build outputs (keeps data/ and .venv/)
	rm -rf artifacts model_store logs key_file.json .pytest_cache .mypy_cache build

FORCE:

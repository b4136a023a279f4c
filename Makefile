# `make run` and `make test` work on a fresh clone: each creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Stages run as `python -m stages.<name>` under dvc: the venv's python must come first on PATH.
export PATH := $(CURDIR)/$(BIN):$(PATH)

PREFECT_PORT ?= 4200
MODEL_PORT ?= 5000
.PHONY: run test test-fast demo bench serve serve-model install install-test install-gpu stack

$(BIN)/python:
	@echo "make: creating the virtual environment .venv"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	@echo "make: installing transferlab with its pinned TensorFlow, Keras, DVC, MLflow and Prefect into .venv (first time: about 3 minutes)"
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	@echo "make: installing the test tools (pytest and friends) into .venv"
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

$(VENV)/.installed-team: $(VENV)/.installed
	@echo "make: installing the team stack's parts (S3 clients, PostgreSQL driver, SeaweedFS) into .venv"
	$(BIN)/python -m pip install -q -e '.[team]'
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test
install-gpu: $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[gpu]'
	touch $(VENV)/.installed

# One pipeline id for every stage of this run: they share one MLflow pipeline run.
run: install
	$(BIN)/python -m transferlab repro

# Everything, end-to-end runs included: what CI runs, on two processes. A file's tests share a process (its module
# fixtures are built once); the shared built workspace is built once for both (tests/conftest.py: built_workspace).
test: install-test
	$(BIN)/python -m pytest -n 2 --dist loadgroup

# The inner loop: no end-to-end runs (`slow`), on two processes; tests of ../shared/assets that are not end-to-end
# run where it exists.
test-fast: install-test
	$(BIN)/python -m pytest -m "not slow" -n 2 --dist loadgroup

demo: install
	$(BIN)/python -m transferlab.demo

bench: install-test
	$(BIN)/python bench/preprocess.py

# A real Prefect server on 127.0.0.1 and the scheduled deployment served from this workspace.
serve: install
	@$(BIN)/python -c "import socket, sys; sys.exit(socket.socket().connect_ex(('127.0.0.1', $(PREFECT_PORT))) == 0)" \
	  || { echo "make serve: port $(PREFECT_PORT) on 127.0.0.1 is taken (another Prefect server?); use it, stop it, or: make serve PREFECT_PORT=4300" >&2; exit 1; }
	$(BIN)/prefect server start --host 127.0.0.1 --port $(PREFECT_PORT) & server=$$!; \
	trap "kill $$server" EXIT; \
	until curl -sf http://127.0.0.1:$(PREFECT_PORT)/api/health >/dev/null; do \
	  kill -0 $$server 2>/dev/null || { echo "make serve: the Prefect server stopped; see its messages above" >&2; exit 1; }; sleep 1; done; \
	PREFECT_API_URL=http://127.0.0.1:$(PREFECT_PORT)/api $(BIN)/python -m flows.serve

# MLflow's own model server for the registered champion, on 127.0.0.1 (POST base64 images: see README).
serve-model: install
	$(BIN)/python -m transferlab serve --port $(MODEL_PORT)

# The team's services on this machine (README: For a team): PostgreSQL, SeaweedFS, MLflow's and Prefect's servers.
stack: $(VENV)/.installed-team
	$(BIN)/python -m transferlab stack up

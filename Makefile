# One development environment in .venv; every target creates it when missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint format bench build clean sam-build

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# aws-sam-cli in its own venv (.venv-sam): its pins clash with the dev tools. About 3.5 minutes to install.
SAM_VENV  := .venv-sam
SAM_STAMP := $(SAM_VENV)/.installed
$(SAM_STAMP):
	test -d $(SAM_VENV) || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/pip install --quiet 'aws-sam-cli>=1.120'
	touch $(SAM_STAMP)

install: $(STAMP) $(SAM_STAMP)

# `sam build` needs a python3.13 (the Lambda runtime) on PATH: pyenv's, when there is one.
sam-build: $(SAM_STAMP)
	PATH="$$(pyenv prefix 3.13 2>/dev/null || true)/bin:$$PATH" SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam build $(ARGS)

demo: $(STAMP)
	$(BIN)/python -m local demo $(ARGS)

test: $(STAMP) $(SAM_STAMP)
	$(BIN)/pytest $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) $(SAM_VENV) .aws-sam out .pytest_cache .ruff_cache

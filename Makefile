# Set-up and everyday commands. `make run` and `make test` work on a fresh machine with
# Python 3.11+ (no root): they create .venv/ and install the project into it first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 5000

.PHONY: run test test-fast lint format translations messages install clean

$(BIN)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (set PYTHON=python3.x)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $@

install: $(BIN)/.installed

# axe-core for the accessibility checks of the browser tests (from the npm registry). Without npm
# the browser tests are skipped and say why.
node_modules/axe-core/axe.min.js: package.json package-lock.json
	@if command -v npm >/dev/null 2>&1; then npm ci --no-audit --no-fund --silent && touch $@; \
	else echo "npm not found: browser tests will be skipped (install Node.js to run them)"; fi

# Compile the committed .po catalogues (the app also does this at start when they are stale).
translations: install
	$(BIN)/pybabel compile --use-fuzzy -d registration/translations -D messages >/dev/null

# Links in emails point at the server `make run` starts (PORT=5001 included), unless BASE_URL
# says otherwise.
BASE_URL ?= http://$(HOST):$(PORT)
DEV    := REGISTRATION_CONFIG=development BASE_URL=$(BASE_URL)

# Run the service on the embedded defaults: SQLite and mail files in instance/, the sample events,
# the mail worker alongside the web server (Ctrl-C stops both).
run: translations
	$(DEV) $(BIN)/flask --app registration db upgrade
	$(DEV) $(BIN)/flask --app registration demo
	@$(DEV) $(BIN)/flask --app registration mail worker & worker=$$!; \
	trap 'kill $$worker 2>/dev/null; wait $$worker' EXIT INT TERM; \
	$(DEV) $(BIN)/flask --app registration run --host $(HOST) --port $(PORT)

# The whole suite: SQLite always; PostgreSQL when reachable (REQUIRE_POSTGRES=1 makes it mandatory).
test: translations node_modules/axe-core/axe.min.js
	$(BIN)/pytest $(PYTEST_ARGS)

# Everything but the multi-process tests that start real servers.
test-fast: translations
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# After changing user-facing text: extract and merge into the catalogues, then translate.
messages: install
	$(BIN)/pybabel extract -F babel.cfg -k _l -k lazy_gettext -k Message --no-location --omit-header -o registration/translations/messages.pot .
	$(BIN)/pybabel update -i registration/translations/messages.pot -d registration/translations --no-fuzzy-matching

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

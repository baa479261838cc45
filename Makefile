# Sidecar — the two quick-start commands are `make demo` and `make test`.
# Needs only Python >= 3.11 and make; everything else is installed into .venv.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
MANAGE := $(BIN)/python manage.py

DEMO_ADDR ?= 127.0.0.1:8000
DEMO_DOCUMENTS ?= 500
DEMO_ADMIN_USER ?= admin
DEMO_ADMIN_PASSWORD ?= admin

# The tests get their own throwaway embedded PostgreSQL: own data directory, own port.
TEST_DB_DIR := $(CURDIR)/.data/test-postgres
TEST_DB_PORT ?= 54339
TEST_ENV := env -u DATABASE_URL DEBUG=1 EMBEDDED_DB_DIR=$(TEST_DB_DIR) EMBEDDED_DB_PORT=$(TEST_DB_PORT)
PYTEST_ARGS ?=

# The documentation site (mkdocs.yml, docs/): `make docs` builds it, `make docs-serve` serves it.
DOCS_ADDR ?= 127.0.0.1:8001
MKDOCS := NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs

.PHONY: install browser messages demo test docs docs-serve docs-screenshots scale-out chaos bench bench-quick lint db-start db-stop db-status clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Sidecar needs Python >= 3.11; found " + sys.version.split()[0] + ". Run: make PYTHON=python3.11 ...")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { \
	  echo "Could not create $(VENV). On Debian/Ubuntu install the venv module: apt-get install python3-venv"; exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,docs]'
	@touch $(STAMP)

# $(call debian_tool,COMMAND,PACKAGE,WHAT NEEDS IT): as root with apt-get, install a Debian
# package whose command is missing; otherwise say which tests will skip and how to enable them.
define debian_tool
	@if ! command -v $(1) >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing $(2) for $(3) (apt-get install $(2))"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2) >/dev/null; \
	  else \
	    echo "$(1) not found: $(3) will be skipped (sudo apt-get install $(2))"; \
	  fi; \
	fi
endef

# The admin's browser tests drive Debian's Chromium (Playwright cannot download its own here;
# CHROMIUM_PATH names another); the translation tests read the code with gettext's xgettext.
browser:
	$(if $(CHROMIUM_PATH),,$(call debian_tool,chromium,chromium,the browser tests))
	$(call debian_tool,xgettext,gettext,the catalogue-completeness test)

# After marking strings for translation: refresh each language's catalogue under locale/
# (NEW_LANGUAGE=xx starts a new one), translate what is new, then `make messages` again to compile
# the .mo files that are committed beside the .po files (docs/translating.md).
NEW_LANGUAGE ?=
MESSAGES_ARGS := --no-location --ignore=.venv --ignore=.data --ignore=tests --ignore=bench --ignore=docs \
  --ignore=site --ignore=staticfiles --ignore=test-output --ignore='*/migrations/*'
messages: install browser
	@for code in $(NEW_LANGUAGE) $$(ls locale); do \
	  DEBUG=1 $(MANAGE) makemessages -l $$code $(MESSAGES_ARGS) || exit 1; done
	@DEBUG=1 $(MANAGE) compilemessages --ignore=.venv

demo: install
	@DEBUG=1 $(MANAGE) demo --addr '$(DEMO_ADDR)' --documents $(DEMO_DOCUMENTS) \
	  --username '$(DEMO_ADMIN_USER)' --password '$(DEMO_ADMIN_PASSWORD)' $(if $(filter 1,$(DEMO_VERBOSE)),--verbose)

# The documentation is built first, strictly; its output is shown only on failure (mkdocs'
# --quiet would hide the very warnings that --strict counts, and pass).
test: install browser
	@out=$$($(MKDOCS) build --strict 2>&1) || { printf '%s\n' "$$out"; echo 'make test: the documentation build failed (mkdocs build --strict)'; exit 1; }
	@$(TEST_ENV) $(MANAGE) embedded_db stop >/dev/null 2>&1 || true
	@rm -rf $(TEST_DB_DIR)
	@status=0; $(TEST_ENV) $(BIN)/python -m pytest $(PYTEST_ARGS) || status=$$?; \
	  $(TEST_ENV) $(MANAGE) embedded_db stop || true; \
	  rm -rf $(TEST_DB_DIR); \
	  exit $$status

# Strict: a broken link or anchor, or a page missing from the nav, fails the build (and make test).
docs: install
	$(MKDOCS) build --strict

docs-serve: install
	$(MKDOCS) serve --dev-addr $(DOCS_ADDR)

# The admin guide's screenshots: the browser tests save docs/images/*.png (1280 x 800) where
# they show each page (tests/browser.py: docs_screenshot). Commit the PNGs.
docs-screenshots: install
	@SIDECAR_DOCS_SCREENSHOTS=1 SIDECAR_REQUIRE_BROWSER=1 $(MAKE) --no-print-directory test \
	  PYTEST_ARGS="$(wildcard tests/admin/test_admin_browser*.py) tests/admin/test_sources_browser.py"

# Scale-out at a size that shows the ratio: three qcluster machines (network
# namespaces, as root) against one; the report goes to test-output/scale-out.json.
scale-out: install
	@SCALE_OUT_DOCUMENTS=$${SCALE_OUT_DOCUMENTS:-1200} $(MAKE) --no-print-directory test PYTEST_ARGS="-s tests/queue/test_scale_out.py"

# Benchmarks (bench/): their own embedded PostgreSQL in .data/bench-postgres, port 54369, started
# and stopped by the runner; reports go to bench/results/. BENCH_ARGS="pipeline --size 500" etc.
BENCH_ARGS ?=

bench: install
	@env -u DATABASE_URL $(BIN)/python -m bench $(BENCH_ARGS)

bench-quick: install
	@env -u DATABASE_URL $(BIN)/python -m bench --quick $(BENCH_ARGS)

# Chaos and fault suites at full size (tests/chaos/): their own embedded PostgreSQL in
# .data/chaos-postgres, port 54379; reports go to tests/chaos/results/. CHAOS_ARGS="kill" etc.
# `make test` runs the short versions (tests/robustness/test_chaos_*.py).
CHAOS_ARGS ?=

chaos: install
	@env -u DATABASE_URL $(BIN)/python -m tests.chaos $(CHAOS_ARGS)

lint: install
	$(BIN)/python -m pip install --quiet ruff
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

db-start: install
	DEBUG=1 $(MANAGE) embedded_db start

db-stop: install
	DEBUG=1 $(MANAGE) embedded_db stop

db-status: install
	DEBUG=1 $(MANAGE) embedded_db status

clean: db-stop
	rm -rf $(VENV) .data

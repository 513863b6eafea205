# The two commands are the contract: `make run` and `make test`, from a fresh clone.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
PYTEST_ARGS ?=
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# A progress line, prefixed like the launcher's own: "[make run] installing ...".
STEP = @printf '[make %s] %s\n' '$(or $(firstword $(MAKECMDGOALS)),help)'
# Measured: `time make run` from a fresh clone on the 2-core development machine until the
# login page answers, idle (load 1.5) and busy (load 9); see README, "The two commands".
FIRST_RUN_NOTE := the first run takes 1 to 4 minutes (measured from a fresh clone on a 2-core \
  machine: 57 s idle, 233 s busy; more if pip has to download): it checks the Debian packages, \
  creates .venv/ with the Python packages, creates a private PostgreSQL cluster and seeds a \
  year of demo readings, saying what it does as it goes. Later runs are ready in 10 to 30 s.

.DEFAULT_GOAL := help
.PHONY: help run run-notice run-system-deps test verify bench lint check-migrations messages makemessages system-deps services clean-state

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(PY):
	$(STEP) "creating the virtualenv $(VENV)/ with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(PY)
	$(STEP) "installing the $(shell grep -cE '^[A-Za-z0-9]' requirements.txt) pinned Python packages of requirements.txt into $(VENV)/"
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

messages: $(VENV)/.runtime  ## compile the translation catalogs (.po -> .mo)
	@scripts/system-deps.sh gettext
	$(STEP) "compiling the translations"
	$(PY) manage.py compilemessages --ignore=.venv --ignore=.pgdata -v 0

makemessages: $(VENV)/.runtime  ## refresh the zh-Hant catalog from the sources
	$(PY) manage.py makemessages -l zh_Hant --ignore=.venv --ignore=.pgdata --ignore=tests --no-obsolete

run: run-notice run-system-deps $(VENV)/.runtime messages  ## set everything up and serve the demo on http://127.0.0.1:8000
	$(PY) scripts/run.py

# Said up front, so that nobody takes the first run's silent minute for a hang.
run-notice:
	@[ -f $(VENV)/.runtime ] || echo "[make run] $(FIRST_RUN_NOTE)"

run-system-deps:
	$(STEP) "checking the Debian packages it needs (PostgreSQL 15 with pg_partman, gettext, Pango, CJK fonts)"
	@scripts/system-deps.sh run

system-deps:  ## install the Debian packages the tests need (when missing, as root)
	@scripts/system-deps.sh test

services:  ## start PostgreSQL and Redis if they are down (as root)
	@scripts/services.sh

lint: $(VENV)/.dev  ## ruff, formatting, mypy and the import contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

check-migrations: $(VENV)/.dev  ## fail if a model change has no migration
	DJANGO_SETTINGS_MODULE=portal.settings.test $(PY) manage.py makemigrations --check --dry-run

test: system-deps services $(VENV)/.dev messages lint check-migrations  ## every check and the whole test suite
	$(BIN)/pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

# The fault and attack scenarios against a PostgreSQL cluster, a Redis and workers of its own
# (never the shared services); `make test` runs the fast subset (tests/test_verify.py).
VERIFY_ARGS ?=
verify: system-deps $(VENV)/.dev messages  ## crash, kill and attack the portal; print expected against observed
	$(PY) -m verify $(VERIFY_ARGS)

# A two-utility flat's bill: its PDF in both languages, each page as PNG (pdftoppm), and its page.
BILL_SHOTS := tests/billing/test_bill_pdf.py::test_the_two_utility_bill_pdf_pages_are_saved_as_png \
	tests/billing/test_bill_page_browser.py

.PHONY: screenshots
screenshots: system-deps services $(VENV)/.dev messages  ## run the browser tests, saving screenshots of the main pages and the bill PDF's pages to screenshots/
	rm -rf screenshots && mkdir screenshots
	SCREENSHOTS_DIR=$(CURDIR)/screenshots $(BIN)/pytest -n 2 -m browser tests/browser $(PYTEST_ARGS) || status=$$?; \
	  SCREENSHOTS_DIR=$(CURDIR)/screenshots $(BIN)/pytest -n 0 $(BILL_SHOTS) $(PYTEST_ARGS) || status=$${status:-$$?}; \
	  ls -1 screenshots; exit $${status:-0}

# `make bench QUICK=1`: the same benchmarks at small sizes, to check they run (figures from a
# quick run are not comparable with the bars in docs/QUALITY.md).
ifdef QUICK
BENCH_ARGS ?= --rows 20000 --meters 50
BENCH_CHARGE_ACCOUNTS ?= 2000
BENCH_BILL_ACCOUNTS ?= 500
BENCH_AUDIT_ARGS ?= --duration 1 --rounds 1
BENCH_WEB_ARGS ?= --quick
endif
BENCH_CHARGE_ACCOUNTS ?= 100000
BENCH_BILL_ACCOUNTS ?= 10000

bench: $(VENV)/.dev services  ## (QUICK=1: small sizes) ingest (BENCH_ARGS=...), prepaid charging, bill run, audit log (BENCH_AUDIT_ARGS=...) and web (BENCH_WEB_ARGS=...) benchmarks
	@scripts/system-deps.sh bench
	$(PY) scripts/bench.py $(BENCH_ARGS)
	$(PY) scripts/bench_charging.py --accounts $(BENCH_CHARGE_ACCOUNTS)
	$(PY) scripts/bench_billing.py --accounts $(BENCH_BILL_ACCOUNTS)
	$(PY) scripts/bench_billing.py --accounts $(BENCH_BILL_ACCOUNTS) --tou
	$(PY) scripts/bench_audit.py $(BENCH_AUDIT_ARGS)
	$(PY) scripts/bench_web.py $(BENCH_WEB_ARGS)

clean-state:  ## stop and delete the private PostgreSQL cluster and local state of `make run`
	-@[ -d .pgdata/data ] && { [ "$$(id -u)" = 0 ] && runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D .pgdata/data -m fast stop || /usr/lib/postgresql/15/bin/pg_ctl -D .pgdata/data -m fast stop; } || true
	rm -rf .pgdata .local

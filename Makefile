# Two commands on a fresh machine: `make run` and `make test` (see README.md).
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: run test fuzz lint format bench clean var

$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

# Directory sign-in over LDAP (requirements-ldap.txt): python-ldap is built against OpenLDAP's
# headers. `make test` installs them, and slapd and its tools for the directory the tests start;
# `make run` needs none of it.
LDAP_DEBS := libldap2-dev libsasl2-dev slapd ldap-utils

$(VENV)/.ldap: requirements-ldap.txt $(VENV)/.installed
	@missing=$$(for p in $(LDAP_DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-ldap.txt
	touch $@

# Local state of the embedded default: SQLite, the filesystem broker, collected static files.
var:
	mkdir -p var/static var/broker/queue var/broker/processed var/broker/control

# The portal with a demo deployment on SQLite and the embedded broker, and a real
# Celery worker and the demo's loopback responders beside the web server, on
# http://$(PORTAL_ADDRESS)/ (make run PORTAL_ADDRESS=127.0.0.1:8080 for another port).
run: export DJANGO_DEBUG ?= 1
run: export PORTAL_ADDRESS ?= 127.0.0.1:8000
run: $(VENV)/.installed var
	$(PY) manage.py migrate --noinput
	$(PY) manage.py load_catalog
	$(PY) manage.py setup_demo
	scripts/run-dev

# The whole suite on a real PostgreSQL and Redis, started here unless DATABASE_URL
# and REDIS_URL name running ones.
test: export DJANGO_SECRET_KEY ?= test-only-secret-key-long-enough-to-pass-the-settings-check
# Tools the tests use for real: ip (a network namespace), nft and iptables-restore (the
# firewall exports are checked by them), pdftoppm (PDF pages rendered), Chromium (the
# browser tests, driven by Playwright; screenshots go to test-artifacts/), node and npm (a
# TypeScript client typed from the schema and compiled, tests/test_clients.py); and the DejaVu
# fonts of the PDF change requests.
TEST_TOOLS := ip:iproute2 nft:nftables iptables-restore:iptables traceroute:traceroute pdftoppm:poppler-utils chromium:chromium \
	node:nodejs npm:npm

test: $(VENV)/.installed $(VENV)/.ldap var
	@missing=$$(for t in $(TEST_TOOLS); do command -v $${t%%:*} >/dev/null || echo $${t#*:}; done; \
	  test -f /usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf || echo fonts-dejavu-core); \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi
	scripts/with-services $(PY) -m pytest

# Schemathesis over every operation, longer than make test's bounded run (FUZZ_EXAMPLES per operation).
fuzz: export DJANGO_SECRET_KEY ?= test-only-secret-key-long-enough-to-pass-the-settings-check
fuzz: $(VENV)/.installed var
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-300} scripts/with-services $(PY) -m pytest tests/test_fuzz.py -s

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: export DJANGO_SECRET_KEY ?= bench-only-secret-key-long-enough-to-pass-the-settings-check
bench: $(VENV)/.installed var
	scripts/with-services $(PY) bench/checklist_api.py
	env -u DATABASE_URL $(PY) bench/checklist_api.py
	scripts/with-services $(PY) bench/bulk_status.py
	scripts/with-services $(PY) bench/checklist_page.py
	env -u DATABASE_URL $(PY) bench/checklist_page.py
	scripts/with-services $(PY) bench/probe_run.py
	scripts/with-services $(PY) bench/scale.py --recorders 2
	scripts/with-services $(PY) bench/export_pdf.py
	scripts/with-services $(PY) bench/deployment_list.py
	scripts/with-services $(PY) bench/exports.py

clean:
	rm -rf $(VENV) var

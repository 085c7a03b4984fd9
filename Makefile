# Two commands do all the set-up: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
TSTAMP := $(VENV)/.installed-test
APT_PACKAGES := postgresql openssl slapd ldap-utils default-jre-headless pebble lego uacme

.PHONY: run test venv test-deps system-deps lint typecheck bench bench-deps bench-pki bench-acme clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e .
	touch $@

venv: $(STAMP)

# A dev server: in memory, initialised, unsealed, kv v2 at secret/.
run: $(STAMP)
	$(VENV)/bin/strongroom server --dev

$(TSTAMP): $(STAMP)
	$(PIP) install -q -e '.[test]'
	touch $@

# Install the Debian packages in $(1) that are missing (slapd preseeded: no system slapd is set up).
define apt_install
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  echo "slapd slapd/no_configuration boolean true" | debconf-set-selections 2>/dev/null || true; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
endef

system-deps:
	$(call apt_install,$(APT_PACKAGES))

test-deps: $(TSTAMP) system-deps

lint: $(TSTAMP)
	$(VENV)/bin/ruff check strongroom tests bench
	$(VENV)/bin/ruff format --check strongroom tests bench

typecheck: $(TSTAMP)
	$(VENV)/bin/mypy strongroom

test: test-deps lint typecheck
	$(PY) -m pytest -q -p no:cacheprovider

# Benchmarks print figures (they are not tests); the load generator and peer come from Debian.
BENCH_PACKAGES := golang-cfssl wrk
bench-deps:
	$(call apt_install,$(BENCH_PACKAGES))

# KV v2 reads and writes against a bare endpoint on the same HTTP stack.
bench: $(STAMP) bench-deps
	$(PY) bench/kv.py

# PKI vs cfssl (the peer) and the crypto-only ceiling, one run.
bench-pki: $(STAMP) bench-deps
	$(PY) bench/pki.py $(BENCH_PKI_ARGS)

# ACME http-01 orders, newOrder to certificate, 20 concurrent clients: strongroom vs pebble, one run.
bench-acme: $(STAMP)
	$(call apt_install,pebble openssl)
	$(PY) bench/acme.py $(BENCH_ACME_ARGS)

clean:
	rm -rf $(VENV) .work build *.egg-info

# softphone: set-up, run, test. GNU make, Debian 12, works from a fresh clone.
#   make setup   system packages (apt, only what is missing) + .venv with the project,
#                its SIP core compiled with mypyc (SOFTPHONE_PURE=1 runs the pure modules)
#   make run     the TUI (ARGS="call sip:1002@127.0.0.1" etc. for the CLI)
#   make test    the whole test suite against real peers (PYTEST_ARGS to narrow it)
#   make bench / make fuzz / make clean

SHELL       := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := setup

PYTHON      ?= python3
VENV        := .venv
VPY         := $(VENV)/bin/python
APT_STAMP   := $(VENV)/.stamp-apt
VENV_STAMP  := $(VENV)/.stamp-venv
PIP_STAMP   := $(VENV)/.stamp-pip
# the SIP core compiled with mypyc (softphone/native.py); the package falls back to the
# pure modules while this is absent or older than their sources
NATIVE_STAMP   := softphone/sip/_compiled/SOURCES
NATIVE_SOURCES := $(addprefix softphone/sip/,__init__.py errors.py uri.py message.py sdes.py sdp.py transaction.py)
ARGS        ?=
PYTEST_ARGS ?=

# Debian packages: build deps for PyAudio, the real SIP peers, headless audio, tools
APT_PACKAGES := python3-venv python3-dev gcc libc6-dev portaudio19-dev \
	kamailio kamailio-sqlite-modules kamailio-tls-modules sip-tester baresip-core \
	pulseaudio pulseaudio-utils libasound2-plugins sox libsox-fmt-all \
	tshark nftables iproute2 tmux espeak-ng libopus0 libspeexdsp1 \
	dnsmasq-base conntrack coturn

# root runs apt directly; others go through sudo when it is there
SUDO := $(shell [ "$$(id -u)" = 0 ] || { command -v sudo >/dev/null && echo sudo; })

# Test runs: unbuffered output, no .pyc litter, tracebacks on hangs
export PYTHONUNBUFFERED := 1
export PYTHONDONTWRITEBYTECODE := 1
export PYTHONFAULTHANDLER := 1

.PHONY: setup run test bench fuzz clean distclean

setup: $(APT_STAMP) $(PIP_STAMP) $(NATIVE_STAMP)

$(APT_STAMP): Makefile
	@missing=$$(for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' "$$p" 2>/dev/null | grep -q '^install ok installed$$' || echo "$$p"; \
	done); \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" != 0 ] && [ -z "$(SUDO)" ]; then \
			echo "make setup: missing Debian packages:" $$missing; \
			echo "make setup: not root and no sudo; install them as root, then re-run"; exit 1; \
		fi; \
		echo "make setup: installing" $$missing; \
		echo 'wireshark-common wireshark-common/install-setuid boolean false' | $(SUDO) debconf-set-selections; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing </dev/null; \
	fi
	@mkdir -p $(VENV) && touch $@

$(VENV_STAMP): | $(APT_STAMP)
	@[ -x $(VPY) ] || $(PYTHON) -m venv $(VENV)
	@touch $@

$(PIP_STAMP): pyproject.toml | $(VENV_STAMP)
	$(VPY) -m pip install -q -e '.[test,native]'
	@touch $@

$(NATIVE_STAMP): $(NATIVE_SOURCES) softphone/native.py $(PIP_STAMP)
	$(VPY) softphone/native.py

run: setup
	$(VENV)/bin/softphone $(ARGS)

# The pytest session owns the peers (Kamailio, SIPp, baresip, PulseAudio): its fixtures
# start them on loopback and stop them by PID, even when tests fail.
test: setup
	$(VENV)/bin/pytest -q -ra -p no:cacheprovider $(PYTEST_ARGS)

# Benchmarks against real peers (minutes; not part of `make test`): ARGS="--quick" etc.
bench: setup
	$(VPY) -m pip install -q -e '.[test,bench]'
	$(VPY) bench/run_all.py $(ARGS)

# The long coverage-guided fuzz run (>= 1,000,000 inputs; FUZZ_EXAMPLES to change it)
fuzz: setup
	$(VPY) -m pip install -q -e '.[test,fuzz]'
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/fuzz $(PYTEST_ARGS)

clean:
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
	rm -rf .pytest_cache .hypothesis build dist run tests/run snapshot_report.html
	rm -rf softphone/sip/_compiled

distclean: clean
	rm -rf $(VENV) *.egg-info

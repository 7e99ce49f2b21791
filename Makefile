# The two commands of the README: `make demo` and `make test`.
# Both set up everything they need on a fresh Debian machine (as root):
# the Debian packages below and a virtual environment in .venv.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEB_PACKAGES := lxc lxc-dev fuse3 pkg-config xfsprogs rsync libxxhash0 \
	openssh-server busybox-static nftables fio python3-venv systemd \
	attr acl postgresql
PYTEST_ARGS ?=

.PHONY: demo test deps venv bench bench-data bench-data-cpu bench-downtime bench-failover \
	bench-shrink bench-idle bench-planner bench-screener clean

# Root: brings the lab up (or reuses it) and migrates vm1 to the other cluster.
demo: venv
	$(BIN)/football lab demo

# Three workers on two cores, one test file each at a time: the root tests
# mostly wait on marsd, FUSE and LXC (with two workers the suite used half of
# the two CPUs: user+sys 9m13s in 10m30s; fresh clone, 2026-12-07: two workers
# pytest 10:07, three 8:46). Files in collection order (tests/conftest.py puts
# the longest first), not xdist's "most tests first", which left the longest
# lab file running alone at the end. The 15 slowest tests are listed at the
# end, so that a slow one shows in every CI log.
test: venv
	$(BIN)/pytest -n 3 --dist loadfile --no-loadscope-reorder --durations=15 $(PYTEST_ARGS)

bench: venv
	$(BIN)/python -m tests.bench.control_plane

# Root: loop devices, FUSE, fio. A 2 GiB volume; about four minutes.
bench-data: venv
	$(BIN)/python -m tests.bench.data_plane

# Root: CPU per MiB of sequential writes, the primary alone and with a secondary, a secondary catching up,
# and CPU per random 4 KiB write with and without the secondary; about 4 minutes.
bench-data-cpu: venv
	$(BIN)/python -m tests.bench.data_cpu

# Root: five migrations of the lab's vm1 (1 GiB) between the clusters; about 2 minutes.
bench-downtime: venv
	$(BIN)/python -m tests.bench.downtime

# Root: a host with 9 primaries dies and is failed over, one takeover at a time and in
# parallel (limit_takeovers); about 2 minutes.
bench-failover: venv
	$(BIN)/python -m tests.bench.failover

# Root: shrinks the lab's vm1 (1 GiB, 20,000 files, 300 MiB) and expands it back; a few minutes.
bench-shrink: venv
	$(BIN)/python -m tests.bench.shrink

# Root: CPU of an idle primary and secondary with 10 resources; about a minute.
bench-idle: venv
	$(BIN)/python -m tests.bench.idle

# No root, no hosts: planning on a synthetic fleet of 1,000 hosts and 14,000
# containers (a 20-move balance plan, one cluster's evacuation); under a minute.
bench-planner: venv
	$(BIN)/python -m tests.bench.planner

# Root: 50 no-op jobs through the screener, then 8 lab migrations one after the
# other against the same 8 by the screener with --max 4; about ten minutes.
bench-screener: venv
	$(BIN)/python -m tests.bench.screener --lab

# Installs only what is missing, so a second run costs a dpkg query.
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" != 0 ]; then echo "need root to install: $$missing" >&2; exit 1; fi; \
		echo "installing Debian packages: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: deps $(VENV)/.installed

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache

# pyctdb: every target sets up what it needs on a fresh Debian 12 machine (as root)
# and can be run again.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
APT := apt-get -o DPkg::Lock::Timeout=600 -y -q
# Debian packages: the interpreter the .deb runs on, and the lab's tools.
DEB_PACKAGES := python3 python3-venv python3-dev python3-pyroute2 iproute2 nftables procps psmisc dbus systemd-container etcd-server etcd-client \
	ctdb samba smbclient nfs-ganesha nfs-ganesha-vfs nfs-common libnfs-utils \
	debhelper dh-python pybuild-plugin-pyproject python3-all rpm lintian \
	ansible ansible-lint openssh-server python3-dbus-next
BENCH_DEB_PACKAGES := ethtool socat keepalived
STAMP := $(VENV)/.installed

.PHONY: install demo test bench lint clean apt packages

$(STAMP): pyproject.toml Makefile
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  DEBIAN_FRONTEND=noninteractive $(APT) update && \
	  DEBIAN_FRONTEND=noninteractive $(APT) install --no-install-recommends $$missing || exit 1; \
	  for u in etcd ctdb smbd nmbd winbind samba-ad-dc nfs-ganesha ssh; do systemctl disable --now $$u 2>/dev/null; done; \
	  pkill -x etcd; pkill -x smbd; pkill -x nmbd; pkill -x ganesha.nfsd; pkill -x sshd; true; fi
	test -x $(PY) || /usr/bin/python3 -m venv $(VENV)
	# compat mode: a plain path entry, not an import hook (the hook costs the CLI ~9 ms)
	$(PY) -m pip install -q -e '.[dev]' --config-settings editable_mode=compat
	$(PY) -m compileall -q ctdb netfs nfs_scripts
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m ctdb.demo

test: $(STAMP)
	$(PY) -m pytest -q tests

bench: $(STAMP)
	@missing=$$(for p in $(BENCH_DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then DEBIAN_FRONTEND=noninteractive $(APT) update && \
	  DEBIAN_FRONTEND=noninteractive $(APT) install --no-install-recommends $$missing; \
	  systemctl disable --now ctdb keepalived 2>/dev/null || true; pkill -x keepalived; true; fi
	$(PY) -m bench
	$(PY) -m bench.cluster
	$(PY) -m bench.services
	$(PY) -m bench.failover

packages: $(STAMP)
	packaging/build.sh build/packages

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	ansible-lint --profile production ansible/

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis

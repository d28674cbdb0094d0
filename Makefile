# One entry point for a fresh Debian machine (as root). Every target is idempotent and fast
# when everything is already installed.
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
APT_PACKAGES := pacemaker corosync keepalived crmsh resource-agents fence-agents kmod curl iproute2 util-linux \
	e2fsprogs psmisc procps iputils-arping stress-ng nftables iptables fuse3 tcpdump python3 python3-venv python3-dev gcc \
	libnetfilter-queue-dev openssh-server
STAMP := $(VENV)/.installed
# The VM testbed only (testbeds/vagrant.yaml): not part of `setup` (`make run` never needs them); `make test`
# installs them for its VM smoke test.
VM_PACKAGES := qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients libvirt-daemon-driver-qemu \
	dnsmasq-base vagrant vagrant-libvirt debootstrap tgt fence-virtd

.PHONY: setup apt venv run test unit bench down clean vm-setup

setup: apt venv

# policy-rc.d: packages such as openssh-server and keepalived must not start daemons on this
# host (fallover starts its own, inside the testbed's namespaces, and stops them by PID).
apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q "install ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		if [ ! -e /usr/sbin/policy-rc.d ]; then \
			printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d; \
			trap 'rm -f /usr/sbin/policy-rc.d' EXIT; \
		fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# The VM testbed's packages (no daemon of theirs starts here: fallover runs libvirtd, tgtd and
# fence_virtd itself, inside the lab's namespaces), then the box (cached; rebuilt when its inputs change).
vm-setup: setup
	@$(MAKE) --no-print-directory apt APT_PACKAGES="$(VM_PACKAGES)"
	$(VENV)/bin/fallover box build

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	@touch $(STAMP)

# The main job: every failure type on the embedded testbed.
run: setup
	$(VENV)/bin/pytest suites/fallover -v

# The project's own tests (unit + against the embedded testbed), then the VM testbed's smoke test
# (3 TCG VMs: up, power-off of the active node under load with verdicts, down) on its own, after the
# namespace clusters are gone: both at once would starve each other on a small machine.
test: setup vm-setup
	$(VENV)/bin/pytest tests -v
	FALLOVER_VM=1 $(VENV)/bin/pytest tests/testbed/test_vagrant.py -v

bench: setup
	$(PY) bench/testbed.py

down: venv
	$(VENV)/bin/fallover down

clean: down
	rm -rf $(VENV) build *.egg-info

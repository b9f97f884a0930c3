# README's two commands are `make demo` and `make test`; both run `make install` first.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
# Debian packages the project needs on the host (runtimes, network, peers for benchmarks).
APT_PACKAGES := crun runc conmon nftables iproute2 busybox-static containernetworking-plugins \
                uidmap podman skopeo docker-registry notary etcd-server openssh-server openssh-client hyperfine socat iperf3 \
                qemu-system-x86 qemu-utils mmdebstrap e2fsprogs supervisor runit zstd qemu-user-static binfmt-support \
                clang
DISTS = $(shell python3 tools/distributions.py --relative)
STAMP = $(VENV)/.installed-$(shell cat $(addsuffix /pyproject.toml,$(DISTS)) pyproject.toml requirements-dev.txt | sha256sum | cut -c1-16)

.PHONY: install apt venv host peers criu foreign-busybox test demo demo-cluster lint bench generate clean-venv
install: apt host peers criu foreign-busybox venv

apt:
	@missing=(); for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing+=($$p); done; \
	if (( $${#missing[@]} )); then echo "apt: installing $${missing[*]}"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$${missing[@]}" >/dev/null; fi

# crun refuses a hybrid cgroup v1 layout unless the hugetlb v1 controller is mounted.
host:
	@if [ -d /sys/fs/cgroup/cpu ] && grep -qw hugetlb /proc/cgroups && ! mountpoint -q /sys/fs/cgroup/hugetlb; then \
	  mkdir -p /sys/fs/cgroup/hugetlb && mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb || true; fi

# CRIU 4.x under /opt/criu for checkpoint/restore (bookworm's /usr/sbin/criu 3.17 fails on this kernel and
# is never used): compiled from the upstream tarball sid carries, once (a second run takes 0.01 s)
criu: apt
	@bash tools/build-criu.sh >/dev/null

# busybox-static of arm64 and armhf (Debian's) for `dockyard image bootstrap busybox --platform` (idempotent)
foreign-busybox: apt
	@bash tools/foreign-busybox.sh

# podman configured for this sandbox, an offline busybox image in it, a crun bundle (idempotent)
peers: apt host
	@bash tools/setup-peers.sh

venv: $(STAMP)
$(STAMP):
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	@# the meta-distribution has no code: installed as a wheel, it adds no editable finder (30 ms per process)
	@# its dependencies (our names, not on PyPI) resolve to the editable members on this same line
	@# each member with its `test` extra: tools/test_alone.py repacks test dependencies from this venv
	$(PY) -m pip install -q --no-build-isolation -r requirements-dev.txt $(foreach d,$(DISTS),-e '$(d)[test]') .
	@rm -f $(VENV)/.installed-*; touch $@

# Each distribution's own tests alone, in a venv holding only it and what it declares
# (tools/test_alone.py: two at a time, venvs cached in .venv/test-alone), then the repository-level
# tests/ in the full venv: every test runs once. The last line is "N passed, N failed" over both
# (pytest's "no tests", exit 5, is no failure). A plain `pytest` still runs everything in one venv.
test: install
	$(PY) tools/test_alone.py --then tests

# Regenerate the files derived from the tree (after adding a distribution or a hook).
generate:
	$(PY) tools/gen_tox.py
	$(PY) tools/gen_hook_docs.py

lint: install
	$(VENV)/bin/ruff check .

demo: install
	bash examples/demo.sh

# Swarm classic on three netns hosts (etcd, a manager, the app spread, a node killed), torn down after.
demo-cluster: install
	bash examples/cluster-demo/demo.sh

bench: install
	$(PY) bench/run.py

clean-venv:
	rm -rf $(VENV)

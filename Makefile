# The two commands a newcomer types: `make run` and `make test`.  `make bench` measures the data path;
# `make torture` kills the all-in-one at random moments of TRIALS operations (200) and checks the invariants.
# `make fuzz` holds the API to its OpenAPI document with a large schemathesis budget (FUZZ_EXAMPLES per operation).
# `make soak` runs the long versions of what `make test` runs short (a simulated week of scheduling).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
APT_STAMP := $(VENV)/.apt-stamp
# Debian packages the tests use when they can (loop-mounted XFS/btrfs images for reflink snapshots; ext4, FAT,
# NTFS and XFS disk images with GPT and MBR tables for file-level restore: dosfstools and mtools build FAT
# without a mount, ntfs-3g's mkntfs and FUSE mount build NTFS).
APT_TEST_PACKAGES := xfsprogs btrfs-progs e2fsprogs fdisk gdisk dosfstools mtools ntfs-3g
# The headless browser the dashboard's tests and `make screenshots` drive (Playwright from PyPI, told to use
# this one: it never downloads a browser of its own); a font so that the pages have glyphs.
APT_BROWSER_PACKAGES := chromium fonts-dejavu-core
APT_BENCH_PACKAGES := restic borgbackup
# A single-node Ceph for the rbd backend's tests (mon, memstore OSD; no mgr) and Debian's librados/librbd
# bindings: no PyPI package provides them.  Installed without recommends (ceph-mgr alone is ~300 MB).
APT_CEPH_PACKAGES := ceph-mon ceph-osd ceph-common python3-rbd python3-rados librbd1
# qemu-storage-daemon (in qemu-system-common) and qemu-img for the qcow2 backend, read through libnbd's bindings.
APT_QEMU_PACKAGES := qemu-utils qemu-system-common python3-libnbd libnbd-bin
# `strongroom mount`: pyfuse3 (the `mount` extra) builds against libfuse3's headers found by pkg-config, and
# runs with fuse3's fusermount3.
APT_FUSE_PACKAGES := libfuse3-dev fuse3 pkg-config
# Debian's modules that the venv links to (compiled ones share the project's cpython-311 ABI; libnbd's
# `nbd` is a pure-Python file over its compiled `libnbdmod`).
DEBIAN_PY_MODULES := rados rbd nbd libnbdmod
DEBIAN_DIST_PACKAGES := /usr/lib/python3/dist-packages
# OpenStack Cinder for the cinder backend's tests (cinder-api, -scheduler, -volume with the RBD driver on the
# test Ceph).  Its pins are not the project's, so it has its own virtualenv, built once and kept: `make clean`
# leaves it, `make clean-cinder` removes it.  CINDER_VENV is where tests/servers/cinder.py looks for it.
CINDER_VERSION := 29.*
CINDER_VENV := .cache/cinder-venv
CINDER_STAMP := $(CINDER_VENV)/.installed-stamp
# OpenStack Barbican (sqlite, its simple_crypto plugin) and the Keystone it authenticates against, for the
# castellan key manager's tests: one virtualenv of their own for the same reason (their pins are one release's,
# not ours), built once and kept; `make clean-barbican` removes it.  gunicorn serves both WSGI apps.
# BARBICAN_VENV is where tests/servers/barbican.py looks for it.
BARBICAN_VERSION := 23.*
KEYSTONE_VERSION := 30.*
BARBICAN_STAMP_TEXT := barbican $(BARBICAN_VERSION) keystone $(KEYSTONE_VERSION) gunicorn
BARBICAN_VENV := .cache/barbican-venv
BARBICAN_STAMP := $(BARBICAN_VENV)/.installed-stamp

# `make screenshots`: PNGs of the dashboard's pages with real data (doc/dashboard.md), into SCREENSHOTS.
SCREENSHOTS ?= .bench/screenshots

.PHONY: screenshots install mount-module run test lint typecheck contracts pytest torture long fuzz soak bench bench-packages bench-fsimage sample-config clean system-packages debian-modules cinder-venv clean-cinder barbican-venv clean-barbican

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q -e '.[test,swift,s3]'
	touch $@

install: $(STAMP) debian-modules mount-module

# pyfuse3 for `strongroom mount` (setup.cfg's `mount` extra), once libfuse3's headers are there (installed
# when root and missing).  Never fails the build: without it only `strongroom mount` is unavailable, and says so.
mount-module: $(STAMP)
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=""; for p in $(APT_FUSE_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null || true; fi; \
	fi
	@$(BIN)/python -c 'import pyfuse3' 2>/dev/null || $(BIN)/pip install -q -e '.[mount]' 2>&1 | grep -v "^WARNING: Location" || true
	@$(BIN)/python -c 'import pyfuse3' 2>/dev/null || echo "pyfuse3 is not installed: strongroom mount needs $(APT_FUSE_PACKAGES)"

# Links Debian's rados/rbd/nbd modules into the venv when they are installed (idempotent; nothing if absent:
# only the rbd and qcow2 backends need them, and they say which package is missing).  `make run` needs neither.
debian-modules: $(STAMP)
	@site=$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	for m in $(DEBIAN_PY_MODULES); do for f in $(DEBIAN_DIST_PACKAGES)/$$m.cpython-*.so $(DEBIAN_DIST_PACKAGES)/$$m.py; do \
	  [ -e "$$f" ] && ln -sfn "$$f" "$$site/"; done; done; true

# Cinder's own virtualenv, stamped: built once (about a minute, more on a busy machine), then never again
# unless the version changes.  Its RBD driver imports rados and rbd, linked in from Debian as for .venv;
# PyMySQL is how the test fixture's Cinder reaches its MariaDB database.
$(CINDER_STAMP):
	test -x $(CINDER_VENV)/bin/python || $(PYTHON) -m venv $(CINDER_VENV)
	$(CINDER_VENV)/bin/pip install -q 'cinder==$(CINDER_VERSION)' PyMySQL 2>&1 | grep -v "^WARNING: Location" || true
	$(CINDER_VENV)/bin/python -c 'import cinder.volume.drivers.rbd, pymysql'
	echo '$(CINDER_VERSION) PyMySQL' > $@

cinder-venv: $(CINDER_STAMP)
	@$(CINDER_VENV)/bin/python -c 'import pymysql' 2>/dev/null || $(CINDER_VENV)/bin/pip install -q PyMySQL
	@site=$$($(CINDER_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	for m in $(DEBIAN_PY_MODULES); do for f in $(DEBIAN_DIST_PACKAGES)/$$m.cpython-*.so; do \
	  [ -e "$$f" ] && ln -sfn "$$f" "$$site/"; done; done; true

# Barbican's and Keystone's virtualenv, stamped like Cinder's: built once, then never again unless a version
# changes (the stamp names them).
$(BARBICAN_STAMP):
	test -x $(BARBICAN_VENV)/bin/python || $(PYTHON) -m venv $(BARBICAN_VENV)
	$(BARBICAN_VENV)/bin/pip install -q 'barbican==$(BARBICAN_VERSION)' 'keystone==$(KEYSTONE_VERSION)' gunicorn \
	  2>&1 | grep -v "^WARNING: Location" || true
	$(BARBICAN_VENV)/bin/python -W ignore -c 'import barbican.api.app, barbican.plugin.crypto.simple_crypto, keystone.server.wsgi, gunicorn'
	echo '$(BARBICAN_STAMP_TEXT)' > $@

barbican-venv:
	@grep -qxF '$(BARBICAN_STAMP_TEXT)' $(BARBICAN_STAMP) 2>/dev/null || rm -f $(BARBICAN_STAMP)
	@$(MAKE) --no-print-directory $(BARBICAN_STAMP)

# Installs Debian packages only when root and only when missing; never fails the build if apt is unavailable.
system-packages:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=""; for p in $(APT_TEST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null || true; fi; \
	  missing=""; for p in $(APT_CEPH_PACKAGES) $(APT_QEMU_PACKAGES) $(APT_BROWSER_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null || true; fi; \
	fi

run: install
	$(BIN)/strongroom-all-in-one

screenshots: system-packages install
	$(BIN)/python -m tests.functional.dashboard_screenshots $(SCREENSHOTS)

lint: install
	$(BIN)/ruff check strongroom tests benchmarks

typecheck: install
	$(BIN)/mypy strongroom

contracts: install
	$(BIN)/lint-imports

# Three pytest-xdist workers: most tests wait on real servers, so three share two cores well.  Four were slower
# (a clean-clone pytest of 1045 s, against 888 s with three before the last tests were added; the two cores
# were 82% busy, user+sys over wall).  A module
# runs whole on one worker, the Cinder ones together (tests/conftest.py).  PYTEST_WORKERS=0: one process.
# The schemathesis run has a process of its own after them: its tests share one node id, which xdist
# takes for a single test, and its summary test reads what the others saw.
PYTEST_WORKERS ?= 3
SCHEMATHESIS := tests/functional/test_api_schemathesis.py
pytest: system-packages install
	@$(MAKE) --no-print-directory debian-modules cinder-venv barbican-venv
	$(BIN)/pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) --dist loadgroup --durations=25 --ignore=$(SCHEMATHESIS)
	$(BIN)/pytest -q -p no:cacheprovider $(SCHEMATHESIS)

test: lint typecheck contracts pytest

# TRIALS=20 make torture; TORTURE_BANK=swift|s3, TORTURE_SEED, TORTURE_VOLUME_MIB (doc/testing.md).
TRIALS ?= 200
torture: install system-packages
	TORTURE_TRIALS=$(TRIALS) $(BIN)/pytest -q -s -p no:cacheprovider -o timeout=0 tests/torture

# The schemathesis run of `make test` (tests/functional/test_api_schemathesis.py, ten examples per operation)
# with a budget of FUZZ_EXAMPLES examples per operation: `make fuzz FUZZ_EXAMPLES=2000`.
FUZZ_EXAMPLES ?= 500
fuzz: install
	STRONGROOM_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -q -p no:cacheprovider -o timeout=0 -s \
	  $(SCHEMATHESIS)

# The longer variants of tests that make test runs short (tests/long.py): the copies at 256 MiB (make test:
# 64 MiB), fs -> S3 and S3 -> Swift, and the SIGKILL mid-copy; the flaky-network protect on Swift too (make
# test: S3); the listing and concurrency cases on the Object Lock bucket too (make test: the plain buckets).
long: install system-packages
	STRONGROOM_LONG=1 STRONGROOM_COPY_VOLUME_MIB=256 $(BIN)/pytest -q -s -p no:cacheprovider -o timeout=0 \
	  tests/functional/test_copy.py tests/functional/test_leases_gc.py::test_protect_and_restore_survive_a_flaky_network_and_fail_cleanly_on_a_dead_one \
	  tests/conformance/test_bank_s3.py::TestS3BankMotoObjectLock

# make test simulates two days of 100 triggers on three engines; this the whole week.
soak: install
	STRONGROOM_SIMULATED_DAYS=7 $(BIN)/pytest -q -s -p no:cacheprovider -o timeout=0 \
	  tests/unit/operationengine/test_simulated_week.py

# The benchmarks' peers (restic, borg), and the packages of the backends they measure (XFS for reflink snapshots,
# Ceph, qemu), installed when root and missing; a peer or backend still missing is skipped with a note.
bench-packages: install system-packages
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=""; for p in $(APT_BENCH_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null || true; fi; \
	fi
	@$(MAKE) --no-print-directory debian-modules

bench: bench-packages
	$(BIN)/python benchmarks/bench_volume.py
	$(BIN)/python benchmarks/bench_api_load.py
	$(BIN)/python benchmarks/bench_fsimage.py
	$(BIN)/python benchmarks/bench_listing.py

# The filesystem-image benchmark alone (as root: it loop-mounts images; about 25 minutes at 3 GiB), e.g.
# make bench-fsimage FSIMAGE_ARGS="--size-gib 12 --only loopback --only restic"
bench-fsimage: bench-packages
	$(BIN)/python benchmarks/bench_fsimage.py $(FSIMAGE_ARGS)

sample-config: install
	$(BIN)/oslo-config-generator --namespace strongroom --namespace strongroom.keys --namespace strongroom.log --namespace oslo.messaging \
	  --namespace keystonemiddleware.auth_token --namespace oslo.middleware.http_proxy_to_wsgi \
	  --namespace oslo.middleware.cors --namespace oslo.middleware.healthcheck \
	  --output-file etc/strongroom/strongroom.conf.sample
	$(BIN)/oslopolicy-sample-generator --namespace strongroom --output-file etc/strongroom/policy.yaml.sample

clean:
	rm -rf $(VENV) .bench .torture build *.egg-info

clean-cinder:
	rm -rf $(CINDER_VENV)

clean-barbican:
	rm -rf $(BARBICAN_VENV)

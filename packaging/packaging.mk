# Packages and the boot test (included by the top-level Makefile). Root and the tools from
# `scripts/install-deps.sh package` are needed; everything is written under target/.
#   make deb         target/packages/calico-bpf-guard_<version>_<arch>.deb and its -dbgsym
#                    package, lintian-clean
#   make rpm         target/packages/calico-bpf-guard-<version>-1.<arch>.rpm and its -debuginfo
#                    package, rpmlint-clean
#   ARCH=arm64       (either target; or aarch64) the arm64 packages, built on an x86_64 host in
#                    the trixie cross chroot (scripts/arm64-chroot.sh); default: the host's
#   make boot-test   boots Debian 12 and Debian 11 with systemd in systemd-nspawn, the .deb
#                    installed (BOOT_SUITES="bullseye" for one)
#   make boot-test-arm64  the same checks on arm64 Debian 12 and 11 booted with systemd under
#                    qemu-system-aarch64 (TCG) on their own kernels, the arm64 .deb installed
#                    (BOOT_SUITES_ARM64="bullseye" for one); not in CI (README: minutes each)
# Both packages ship the binary built by cargo-zigbuild for glibc 2.17 with the `static` feature
# and profile.release-debuginfo, stripped, its debug info in the debug package (debian/rules,
# rpm/calico-bpf-guard.spec).
.PHONY: deb rpm packages boot-test boot-test-arm64

BOOT_SUITES ?= bookworm bullseye
# The test kit the boot test plants with, built like the packaged guard (glibc 2.17, libelf and
# zlib linked in) so that it runs on every suite. Its own target dir: the everyday build keeps
# linking the system's libelf.
ZIG_TARGET := $(shell uname -m)-unknown-linux-gnu

ARCH ?=
deb:
	ARCH=$(ARCH) packaging/build-deb.sh

rpm:
	ARCH=$(ARCH) packaging/build-rpm.sh

packages: deb rpm

# The boot test plants state with the test kit, so it needs that binary next to the package.
# Every suite runs even when one fails; the target fails if any did.
boot-test: deb rpm
	CARGO_TARGET_DIR=$(CURDIR)/target/zig $(CARGO) zigbuild --release --locked -p calico-bpf-testkit \
	  --features calico-bpf-guard/static --target $(ZIG_TARGET).2.17
	@failed=; for suite in $(BOOT_SUITES); do \
	  SUITE=$$suite TESTKIT=target/zig/$(ZIG_TARGET)/release/calico-bpf-testkit tests/boot/run.sh || \
	    failed="$$failed $$suite"; \
	done; \
	if [ -n "$$failed" ]; then echo "boot test failed on:$$failed"; exit 1; fi

# The arm64 test kit, linked by zig for glibc 2.17 like the arm64 package, in the cross chroot
# (the host's toolchain has no aarch64 standard library).
ARM64_TESTKIT_DIR := $(CURDIR)/target/zig-arm64
BOOT_SUITES_ARM64 ?= bookworm bullseye
boot-test-arm64:
	$(MAKE) deb ARCH=arm64
	CARGO_TARGET_DIR=$(ARM64_TESTKIT_DIR) scripts/arm64-chroot.sh run \
	  cargo zigbuild --release --locked \
	  -p calico-bpf-testkit --features calico-bpf-guard/static --target aarch64-unknown-linux-gnu.2.17
	@failed=; for suite in $(BOOT_SUITES_ARM64); do \
	  SUITE=$$suite TESTKIT=$(ARM64_TESTKIT_DIR)/aarch64-unknown-linux-gnu/release/calico-bpf-testkit \
	    tests/boot/run-arm64.sh || failed="$$failed $$suite"; \
	done; \
	if [ -n "$$failed" ]; then echo "boot test arm64 failed on:$$failed"; exit 1; fi

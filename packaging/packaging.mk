# Packages and the boot test (included by the top-level Makefile). Root and the tools from
# `scripts/install-deps.sh package` are needed; everything is written under target/.
#   make deb         target/packages/calico-bpf-guard_<version>_<arch>.deb, lintian-clean
#   make rpm         target/packages/calico-bpf-guard-<version>-1.<arch>.rpm
#   make boot-test   boots Debian 12 with systemd in systemd-nspawn, the .deb installed
.PHONY: deb rpm packages boot-test

deb:
	packaging/build-deb.sh

rpm:
	packaging/build-rpm.sh

packages: deb rpm

# The boot test plants state with the test kit, so it needs that binary next to the package.
boot-test: deb rpm
	$(CARGO) build --release --locked -p calico-bpf-testkit
	tests/boot/run.sh

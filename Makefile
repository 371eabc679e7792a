# Everyday targets. Privileged tests and the demo need root (they create bpffs mounts, cgroups
# and network namespaces of their own and remove them afterwards).
CARGO ?= cargo

.PHONY: all build release deps test unit lint demo fuzz clean

all: build

deps:
	scripts/install-deps.sh test

build:
	$(CARGO) build --workspace

release:
	$(CARGO) build --release --workspace

# The README's test command: every unit and privileged integration test, with fault
# injection compiled into the binary under test (inert unless FAILPOINTS is set).
test: deps
	$(CARGO) nextest run --workspace --features failpoints --no-fail-fast

unit:
	$(CARGO) test --lib

# scripts/house.py: no import circles, no arrow back up the data flow, no source file over 600
# lines, every module opening with its paragraph.
lint:
	scripts/house.py
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --features failpoints -- -D warnings

# The declared minimum Rust (Cargo.toml's rust-version: trixie's rustc and cargo 1.85) builds
# the workspace, in the trixie cross chroot that scripts/arm64-chroot.sh makes and caches
# (needs root and `scripts/install-deps.sh package`).
.PHONY: msrv
msrv:
	scripts/arm64-chroot.sh run cargo build --locked --workspace --all-targets --features failpoints

# Clippy for aarch64 (trixie's clippy 1.85, the declared minimum, in the cross chroot of make
# msrv): cfg'd code, libc's types (c_char is u8 there, nlink_t u32) and lints this host's newer
# clippy no longer has only show up there.
.PHONY: lint-arm64
lint-arm64:
	scripts/arm64-chroot.sh run cargo clippy --locked --workspace --all-targets --features failpoints \
	  --target aarch64-unknown-linux-gnu -- -D warnings

# Each fuzz target for FUZZ_SECONDS (cargo-fuzz on stable via RUSTC_BOOTSTRAP).
FUZZ_SECONDS ?= 30
fuzz:
	scripts/fuzz.sh $(FUZZ_SECONDS)

demo: deps release
	scripts/demo.sh

# The privileged tests and the demo on this host's kernel and on Debian's 5.10, 6.1 and 6.12
# kernels booted under QEMU (scripts/kernel-matrix.sh; SUITES=bookworm picks rows, and
# SUITES="trixie trixie-arm64" mixes architectures). kernel-matrix-arm64: Debian's arm64 6.1 and
# 6.12 under qemu-system-aarch64, the tests built for aarch64 in the trixie cross chroot.
.PHONY: kernel-matrix kernel-matrix-arm64
kernel-matrix: deps
	scripts/install-deps.sh matrix
	scripts/kernel-matrix.sh $(SUITES)

kernel-matrix-arm64: deps
	scripts/install-deps.sh matrix
	scripts/kernel-matrix.sh bookworm-arm64 trixie-arm64

clean:
	$(CARGO) clean

-include packaging/packaging.mk
-include bench/bench.mk
-include deploy/deploy.mk

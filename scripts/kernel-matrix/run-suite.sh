#!/usr/bin/env bash
# One row of the kernel matrix, on whatever kernel this runs on (a guest, or the build host
# inside its own mount namespace): the test suite from a nextest archive that the build host
# extracted to TESTS (read in place: a guest reads it over 9p, faster than extracting it under
# TCG), then the demo, all against binaries built on the build host. Writes to OUT: kernel,
# nextest.log, nextest.rc, junit.xml, demo.log, demo.rc, phases (seconds per phase). Needs root.
# Usage: run-suite.sh REPO TESTS BINDIR OUT SCRATCH
# Env:   KM_NEXTEST (cargo-nextest's path), KM_FILTER (a nextest filterset; default all tests);
#        KM_RUNNER runs the archive instead of nextest (arm64: run-tests.sh, which has no
#        filterset of its own: the build host wrote TESTS/run.json); KM_GUARD_SRC and
#        KM_GUARD_DST: the archived guard and the path the tests run it at (default: the
#        host's debug build)
set -uo pipefail
repo=$1 tests=$2 bindir=$3 out=$4 scratch=$5
export CI=true

rm -rf "$scratch"
mkdir -p "$scratch" "$out"
uname -r >"$out/kernel"
: >"$out/phases"
t0=$(date +%s)
phase() {
    local now
    now=$(date +%s)
    echo "$1 $((now - t0))" >>"$out/phases"
    t0=$now
}

# The tests run the guard at the path compiled into them (env!("CARGO_BIN_EXE_…")), in the
# working tree, which others may be rebuilding meanwhile: put the archived binary there.
guard_src=${KM_GUARD_SRC:-$tests/target/debug/calico-bpf-guard}
guard_dst=${KM_GUARD_DST:-$repo/target/debug/calico-bpf-guard}
mount --bind "$guard_src" "$guard_dst" ||
    echo "run-suite: cannot bind the archived guard over $guard_dst" >&2

# The store (and so junit.xml) must be writable: a guest's / is read-only.
cat >"$scratch/nextest.toml" <<EOF
[store]
dir = "$scratch/store"

[profile.kernel-matrix]
fail-fast = false
# A hung test is killed after 3 minutes (the slowest takes about 1 under TCG) and counted as
# failed; the rest still run.
slow-timeout = { period = "60s", terminate-after = 3 }

[profile.kernel-matrix.junit]
path = "junit.xml"
EOF

meta=$tests/target/nextest
if [ -n "${KM_RUNNER:-}" ]; then
    "$KM_RUNNER" "$tests" "$scratch" "$out/junit.xml" >"$out/nextest.log" 2>&1
    echo $? >"$out/nextest.rc"
else
    "${KM_NEXTEST:-cargo-nextest}" nextest run --binaries-metadata "$meta/binaries-metadata.json" \
        --cargo-metadata "$meta/cargo-metadata.json" --workspace-remap "$repo" \
        --target-dir-remap "$tests/target" \
        --tool-config-file "kernel-matrix:$scratch/nextest.toml" --profile kernel-matrix \
        --no-fail-fast --color never -E "${KM_FILTER:-all()}" >"$out/nextest.log" 2>&1
    echo $? >"$out/nextest.rc"
    cp "$scratch/store/kernel-matrix/junit.xml" "$out/junit.xml" 2>/dev/null
fi
phase tests

timeout 5m "$bindir/calico-bpf-testkit" demo --guard "$bindir/calico-bpf-guard" >"$out/demo.log" 2>&1
echo $? >"$out/demo.rc"
phase demo

umount "$guard_dst" 2>/dev/null
rm -rf "$scratch"

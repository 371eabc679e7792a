#!/usr/bin/env bash
# make kernel-matrix: the whole privileged test suite and the demo on this host's kernel and on
# Debian's own generic kernels (5.10 bullseye, 6.1 bookworm, 6.12 trixie), each booted under
# QEMU, all against the binaries built here once. The arm64 rows (bookworm-arm64, trixie-arm64;
# make kernel-matrix-arm64) boot Debian's arm64 kernels under qemu-system-aarch64 against
# binaries built for aarch64 (scripts/kernel-matrix/arm64.sh).
#
# Each guest boots the kernel package's vmlinuz with a small initramfs (static busybox and the
# package's own virtio/9p modules, scripts/kernel-matrix/init) that mounts this machine's / over
# virtio-9p read-only and runs scripts/kernel-matrix/guest.sh there, which runs
# scripts/kernel-matrix/run-suite.sh, as the host row does. Nested KVM does not work on the CI
# machines (QEMU asserts with -cpu host and hangs with qemu64), so guests run under TCG.
#
# Kernel packages are resolved through linux-image-amd64 (or -arm64) of each suite (with its
# security updates) with a private apt state, downloaded once and cached under
# target/kernel-matrix.
#
# Usage: scripts/kernel-matrix.sh [ROW ...]   (default: host bullseye bookworm trixie)
#        ROW: host, bullseye, bookworm, trixie, bookworm-arm64, trixie-arm64
# Env:   KM_TIMEOUT per guest (default 30m), KM_MEM guest memory (default 4G),
#        KM_REFRESH=1 refreshes the apt lists now (otherwise at most once a day),
#        KM_GUEST_FILTER nextest filterset for guests (default: all but ownership_props and the sync's).
# Needs root, qemu-system-x86, busybox-static, kmod, cpio, zstd; the arm64 rows also
# qemu-system-arm, mmdebstrap and the cross chroot's tools (scripts/install-deps.sh matrix).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
km=$repo/target/kernel-matrix
# 5.10 under TCG has taken from 9 to over 20 minutes for the whole suite on the same machine.
timeout_guest=${KM_TIMEOUT:-30m}
mem=${KM_MEM:-4G}
# ownership_props is pure property testing (thousands of cases, no kernel call): the same on
# every kernel and the slowest binary under TCG by far, so guests leave it to the host row. The
# sync and its test API server make no kernel call beyond sockets either, and their timing-bound
# watch tests only grow flaky on an emulated CPU: the host row runs them.
guest_filter=${KM_GUEST_FILTER:-not binary(ownership_props) and not package(calico-bpf-guard-sync) and not package(calico-bpf-guard-testapi)}

if [ $# -gt 0 ]; then rows=("$@"); else rows=(host bullseye bookworm trixie); fi

log() { echo "kernel-matrix: $*" >&2; }
die() {
    log "$*"
    exit 2
}

# Guests mount tmpfs over /tmp and /run of the host's /, and find the tree at the same path.
case $repo/ in /tmp/* | /run/*) die "the tree must not be under /tmp or /run: guests hide those" ;; esac
[ "$(id -u)" = 0 ] || die "needs root (the tests create bpffs mounts, cgroups and netns)"
x86=0 arm64=0
for r in "${rows[@]}"; do
    case $r in
    host | bullseye | bookworm | trixie) x86=1 ;;
    bookworm-arm64 | trixie-arm64) arm64=1 ;;
    *) die "unknown row $r (host, bullseye, bookworm, trixie, bookworm-arm64, trixie-arm64)" ;;
    esac
done
tools=(modprobe depmod cpio zstd dpkg-deb apt-get)
# The arm64 initramfs takes busybox from the guests' arm64 userland.
[ "$x86" = 0 ] || tools+=(qemu-system-x86_64 busybox)
[ "$arm64" = 0 ] || tools+=(qemu-system-aarch64 mmdebstrap python3)
for t in "${tools[@]}"; do
    command -v "$t" >/dev/null || die "$t is missing: run scripts/install-deps.sh matrix"
done
nextest=$(command -v cargo-nextest) || die "cargo-nextest is missing: run scripts/install-deps.sh test"
busybox=$(command -v busybox || true)
# Debian's busybox-static, not a dynamic busybox: the initramfs has no libc.
[ "$x86" = 0 ] || ! ldd "$busybox" >/dev/null 2>&1 || die "$busybox is not static: install busybox-static"
# shellcheck source=scripts/kernel-matrix/arm64.sh
. scripts/kernel-matrix/arm64.sh

# ---- build once, on the host --------------------------------------------------------------
build() {
    mkdir -p "$km/bin" "$km/cache" "$km/results"
    log "building the release binaries (demo) and the test archive (failpoints)"
    # The demo's two binaries only: the sync's release build (LTO over kube and rustls) is minutes
    # and hundreds of MB that no row runs.
    cargo build --release -p calico-bpf-guard -p calico-bpf-testkit --quiet
    # A copy: the demo in every row runs these, whatever gets rebuilt meanwhile.
    install -m 0755 target/release/calico-bpf-guard target/release/calico-bpf-testkit "$km/bin/"
    cargo nextest archive --workspace --features failpoints --archive-file "$km/tests.tar.zst" \
        2>&1 | grep -v '^\s*Compiling' >&2
    rm -rf "$km/tests"
    mkdir -p "$km/tests"
    tar -I zstd -xf "$km/tests.tar.zst" -C "$km/tests"
    # Every test in the archive: a row's "skipped" is what it did not run, binaries left out
    # by a filter included (nextest's own summary leaves those out).
    total=$("$nextest" nextest list --binaries-metadata "$km/tests/target/nextest/binaries-metadata.json" \
        --cargo-metadata "$km/tests/target/nextest/cargo-metadata.json" --workspace-remap "$repo" \
        --target-dir-remap "$km/tests/target" --message-format oneline 2>/dev/null | grep -c .)
}

# ---- Debian kernels: fetch_kernel, make_initramfs ------------------------------------------
# shellcheck source=scripts/kernel-matrix/kernels.sh
. scripts/kernel-matrix/kernels.sh

# ---- one row --------------------------------------------------------------------------------
# run_guest SUITE RESULTS: boot the suite's kernel; 0 if the guest finished (not whether the
# tests passed), 124 if it timed out.
run_guest() {
    local res=$2
    cat >"$res/guest.env" <<EOF
KM_REPO=$repo
KM_TESTS=$km/tests
KM_BINDIR=$km/bin
KM_MODROOT=$kroot
KM_NEXTEST=$nextest
KM_FILTER=$(printf %q "$guest_filter")
EOF
    local rc=0
    # mitigations=off: a throwaway test guest needs no Spectre/Meltdown mitigations, and under
    # an emulated CPU every retpoline and barrier on the syscall path is paid many times over.
    timeout -k 30s "$timeout_guest" qemu-system-x86_64 \
        -accel tcg,thread=multi -cpu max -smp 2 -m "$mem" \
        -nodefaults -no-reboot -display none -monitor none -serial "file:$res/console.log" \
        -kernel "$kroot/boot/vmlinuz-$kver" -initrd "$km/initramfs-$1.cpio" \
        -append "console=ttyS0 panic=-1 random.trust_cpu=on mitigations=off KM_STAGE2=$repo/scripts/kernel-matrix/guest.sh" \
        -fsdev "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap" \
        -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot \
        -fsdev "local,id=results,path=$res,security_model=none,multidevs=remap" \
        -device virtio-9p-pci,fsdev=results,mount_tag=results \
        -device virtio-rng-pci </dev/null >"$res/qemu.log" 2>&1 || rc=$?
    return "$rc"
}

# How nextest marks a test that did not pass.
fail_re='(FAIL|TIMEOUT|SIG[A-Z]+|ABORT|LEAK-FAIL)'

fmt_time() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

declare -a table
failed_rows=0

# row NAME: run it and print its result line (and what failed).
row() {
    local name=$1 res=$km/results/$1 start status=ok rc=0 kernel
    rm -rf "$res"
    mkdir -p "$res"
    start=$(date +%s)
    if [ "$name" = host ]; then
        kernel="$(uname -r) (this host)"
        unshare --mount --propagation private \
            scripts/kernel-matrix/run-suite.sh "$repo" "$km/tests" "$km/bin" "$res" \
            "$(mktemp -d)" || rc=$?
    else
        local suite=${name%-arm64} arch=amd64
        [ "$suite" = "$name" ] || arch=arm64
        if ! fetch_kernel "$suite" "$arch"; then
            table+=("$(printf '%-34s %-14s %s' "?" "$name" "ERROR: cannot get the kernel")")
            log "$name: cannot get the kernel"
            failed_rows=$((failed_rows + 1))
            return
        fi
        kernel="$kver ($kpkg)"
        kernel=${kernel/linux-image-$kver /}
        # Built every time (it takes a second): it holds stage 1, which may have changed.
        log "$name: booting $kver ($kpkg) under TCG, timeout $timeout_guest"
        if [ "$arch" = arm64 ]; then
            make_initramfs "$kroot" "$kver" "$km/initramfs-$name.cpio" "$rootfs/usr/bin/busybox"
            run_guest_arm64 "$name" "$res" || rc=$?
        else
            make_initramfs "$kroot" "$kver" "$km/initramfs-$name.cpio"
            run_guest "$name" "$res" || rc=$?
        fi
    fi
    local secs=$(($(date +%s) - start))
    [ "$rc" = 124 ] && status=TIMEOUT
    [ "$rc" != 0 ] && [ "$rc" != 124 ] && status="ERROR (exit $rc)"

    local summary run=- passed=- failed=- skipped=- demo=-
    summary=$(grep -E '^ *Summary \[' "$res/nextest.log" 2>/dev/null | tail -n 1 || true)
    if [ -n "$summary" ]; then
        run=$(count "$summary" 'tests? run')
        passed=$(count "$summary" passed)
        failed=$(($(count "$summary" failed) + $(count "$summary" 'timed out')))
        skipped=$(count "$summary" skipped)
        # (run-tests.sh counts what the filter left out itself.)
        [ "${name%-arm64}" = "$name" ] && [ $((total - run)) -gt "$skipped" ] && skipped=$((total - run))
    elif [ -s "$res/nextest.log" ]; then
        # No summary (the guest timed out or died): what finished so far, marked as partial.
        passed=$(grep -cE '^ +PASS \[' "$res/nextest.log" || true)
        failed=$(grep -cE "^ +$fail_re \[" "$res/nextest.log" || true)
        run="$((passed + failed))+"
    fi
    [ -f "$res/demo.rc" ] && { [ "$(cat "$res/demo.rc")" = 0 ] && demo=ok || demo=failed; }
    if [ "$status" = ok ]; then
        if [ ! -f "$res/nextest.rc" ] || [ -z "$summary" ]; then
            status="ERROR (no test results)"
        elif [ "$(cat "$res/nextest.rc")" != 0 ] || [ "$demo" != ok ]; then
            status=FAIL
        fi
    fi
    [ -f "$res/kernel" ] && [ "$name" != host ] && [ "$(cat "$res/kernel")" != "$kver" ] &&
        status="ERROR (booted $(cat "$res/kernel"))"

    local line
    line=$(printf '%-34s %-14s %5s %6s %6s %7s %8s %-6s %s' "$kernel" "$name" "$run" "$passed" \
        "$failed" "$skipped" "$(fmt_time "$secs")" "$demo" "$status")
    table+=("$line")
    local phases
    phases=$(awk '{printf "%s%s %ss", sep, $1, $2; sep=", "}' "$res/phases" 2>/dev/null || true)
    echo "kernel-matrix: $kernel: $run tests run, $passed passed, $failed failed, $skipped skipped, $(fmt_time "$secs") (${phases:-no phases}), demo $demo: $status"
    if [ "$status" != ok ]; then
        failed_rows=$((failed_rows + 1))
        # nextest lists every failed test after its summary line (without one: as they ended).
        if [ -n "$summary" ]; then sed -n '/^ *Summary \[/,$p' "$res/nextest.log"; else cat "$res/nextest.log"; fi 2>/dev/null |
            grep -E "^ +$fail_re \[" | sed 's/^ */    /' || true
        [ "$demo" = failed ] && { echo "    demo:" && tail -n 5 "$res/demo.log" | sed 's/^/      /'; }
        [ -f "$res/console.log" ] && [ -z "$summary" ] &&
            { echo "    console (last lines):" && tail -n 15 "$res/console.log" | sed 's/^/      /'; }
        [ -s "$res/qemu.log" ] && { echo "    qemu:" && tail -n 5 "$res/qemu.log" | sed 's/^/      /'; }
        echo "    logs: $res"
    fi
}

# count TEXT WHAT: the number before WHAT in nextest's summary line, 0 if absent.
count() {
    local n
    n=$(grep -oE "[0-9]+ $2" <<<"$1" | head -n 1 | grep -oE '^[0-9]+' || true)
    echo "${n:-0}"
}

mkdir -p "$km/cache" "$km/results"
[ "$x86" = 0 ] || build
[ "$arm64" = 0 ] || {
    make_rootfs_arm64
    build_arm64
}
for r in "${rows[@]}"; do row "$r"; done

echo
printf '%-34s %-14s %5s %6s %6s %7s %8s %-6s %s\n' kernel suite tests passed failed skipped time demo result
printf '%s\n' "${table[@]}"
echo "guests run: $guest_filter (skipped: the rest); the host row runs every test"
[ "$failed_rows" = 0 ] || {
    log "$failed_rows of ${#rows[@]} kernels failed"
    exit 1
}

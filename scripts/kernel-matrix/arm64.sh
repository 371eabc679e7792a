# shellcheck shell=bash disable=SC2154 # (kernel-matrix.sh sets what this file uses)
# The kernel matrix's arm64 rows, sourced by scripts/kernel-matrix.sh (which sets repo, km,
# mem, timeout_guest, guest_filter, log and die): Debian's arm64 kernels under
# qemu-system-aarch64 with TCG, the test suite built for aarch64 in the trixie cross chroot
# (scripts/arm64-chroot.sh).
#
# An x86_64 host's / cannot be an arm64 guest's root, so each guest boots into an arm64 Debian
# userland that mmdebstrap extracts here (no maintainer script runs, so nothing needs to execute
# arm64 code on this host) and caches, served read-only over 9p, with the tree at its own path
# over a second share. There is no aarch64 cargo-nextest to run the archive with: building one
# cold costs many minutes of CI time for every clean clone, and no registry here ships one
# prebuilt. scripts/kernel-matrix/run-tests.sh runs the same archive instead, each test in its
# own process under a timeout, and writes nextest's result lines, summary and a JUnit file.

arm64_target=aarch64-unknown-linux-gnu
# The chroot's target dir (arm64-chroot.sh's default): the tests' compiled-in paths, such as
# the guard's CARGO_BIN_EXE_, point into it.
arm64_target_dir=$repo/target/trixie
arm64_tests=$km/tests-arm64

# build_arm64: the aarch64 test archive and the debug binaries the demo runs, built in the
# cross chroot and unpacked for the guests, and TESTS/tests.tsv, what run-tests.sh runs.
# Debug, not release: the release profile's LTO with one codegen unit costs minutes more of a
# cold CI build for aarch64, and the suite already tests this very build of the guard. Without
# the sync and its test API server: guests never run their tests (guest_filter), and their
# dependency tree (kube, k8s-openapi, tokio, rustls) built for aarch64 with tests was most of
# this build's time and disk (stop 22's CI ran out of disk here). make lint-arm64 still checks
# them for aarch64 in CI; ARCHES="amd64 arm64" make image builds the sync's arm64 binary.
build_arm64() {
    log "building the aarch64 test archive (failpoints) in the trixie cross chroot"
    local t0=$SECONDS pkgs="--workspace --exclude calico-bpf-guard-sync --exclude calico-bpf-guard-testapi"
    mkdir -p "$km/bin-arm64"
    CARGO_TARGET_DIR=$arm64_target_dir scripts/arm64-chroot.sh run sh -c "cargo build --locked \
        --quiet $pkgs --features failpoints --target $arm64_target --bins &&
        cargo nextest archive --cargo-quiet --locked $pkgs --features failpoints \
        --target $arm64_target --archive-file '$km/tests-arm64.tar.zst'" >&2
    install -m 0755 "$arm64_target_dir/$arm64_target/debug/calico-bpf-guard" \
        "$arm64_target_dir/$arm64_target/debug/calico-bpf-testkit" "$km/bin-arm64/"
    rm -rf "$arm64_tests"
    mkdir -p "$arm64_tests"
    tar -I zstd -xf "$km/tests-arm64.tar.zst" -C "$arm64_tests"
    # Which tests the guests run, decided by nextest itself (the filterset, ignored tests): it
    # lists the aarch64 binaries here under qemu-user, with the guests' userland as their
    # libraries, once in all (binaries the filter leaves out list no tests) and once filtered.
    # run-tests.sh reads the result as one line a test.
    local meta=$arm64_tests/target/nextest filter
    for filter in "all()" "$guest_filter"; do
        CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L $rootfs" \
            "$nextest" nextest list --binaries-metadata "$meta/binaries-metadata.json" \
            --cargo-metadata "$meta/cargo-metadata.json" --workspace-remap "$repo" \
            --target-dir-remap "$arm64_tests/target" --message-format json -E "$filter" 2>/dev/null
        echo
    done >"$arm64_tests/list.json"
    python3 - "$arm64_tests/list.json" >"$arm64_tests/tests.tsv" <<'EOT'
import json, sys
every, chosen = (json.loads(line)["rust-suites"] for line in open(sys.argv[1]) if line.strip())
for sid, suite in sorted(every.items()):
    picked = chosen.get(sid, {}).get("testcases", {})
    for name in sorted(suite["testcases"]):
        run = picked.get(name, {}).get("filter-match", {}).get("status") == "matches"
        print("\t".join([sid, suite["binary-path"], suite["cwd"], name, "1" if run else "0"]))
EOT
    log "aarch64 build and archive: $((SECONDS - t0)) s"
}

# make_rootfs_arm64: sets rootfs to the guests' arm64 userland, extracted once and cached.
# trixie, like the chroot the tests are built in: they link its libelf and glibc. What the
# guest runs: bash (guest.sh, run-suite.sh, run-tests.sh), coreutils, util-linux's mount,
# iproute2 (the tests' and demo's ip), kmod (modprobe), mawk, procps; busybox-static is stage 1
# of the initramfs; libelf, zlib and libgcc for the test binaries.
rootfs_packages=(bash coreutils util-linux mount iproute2 kmod mawk grep sed findutils procps
    hostname busybox-static libc6 libgcc-s1 libelf1t64 zlib1g)
make_rootfs_arm64() {
    local args key
    args=(--variant=extract --architectures=arm64 "--include=$(
        IFS=,
        echo "${rootfs_packages[*]}"
    )" trixie)
    key=$(printf '%s\n' "${args[@]}" | sha256sum | cut -c1-12)
    rootfs=$km/rootfs-arm64-$key
    if [ ! -f "$rootfs/.ready" ]; then
        command -v mmdebstrap >/dev/null || die "mmdebstrap is missing: run scripts/install-deps.sh matrix"
        log "extracting the guests' arm64 userland into $rootfs (once)"
        rm -rf "$rootfs" "$rootfs.part"
        mmdebstrap --quiet --mode=root "${args[@]}" "$rootfs.part" \
            "deb http://deb.debian.org/debian trixie main" >&2
        # What maintainer scripts would have made: /bin/sh (dash's postinst links it; bash serves
        # the scripts here), awk (an alternative mawk's postinst registers) and /var/run, which
        # iproute2's netns code uses.
        [ -e "$rootfs.part/bin/sh" ] || ln -s bash "$rootfs.part/bin/sh"
        [ -e "$rootfs.part/usr/bin/awk" ] || ln -s mawk "$rootfs.part/usr/bin/awk"
        [ -L "$rootfs.part/var/run" ] || {
            rmdir "$rootfs.part/var/run" 2>/dev/null || true
            ln -s /run "$rootfs.part/var/run"
        }
        touch "$rootfs.part/.ready"
        mv "$rootfs.part" "$rootfs"
        # An older userland (another package list) is of no further use.
        find "$km" -maxdepth 1 -name 'rootfs-arm64-*' ! -name "${rootfs##*/}" -exec rm -rf {} +
    fi
    # Every 9p mount point the guest uses must exist in the read-only root: the tree's path.
    mkdir -p "$rootfs$repo"
}

# run_guest_arm64 ROW RESULTS: boot the row's kernel (kver, kroot from fetch_kernel) on the
# arm64 userland with the tree mounted at its own path; 0 if the guest finished (not whether
# the tests passed), 124 if it timed out.
run_guest_arm64() {
    local res=$2
    cat >"$res/guest.env" <<EOT
KM_REPO=$repo
KM_TESTS=$arm64_tests
KM_BINDIR=$km/bin-arm64
KM_MODROOT=$kroot
KM_RUNNER=$repo/scripts/kernel-matrix/run-tests.sh
KM_GUARD_SRC=$arm64_tests/target/$arm64_target/debug/calico-bpf-guard
KM_GUARD_DST=$arm64_target_dir/$arm64_target/debug/calico-bpf-guard
EOT
    local rc=0
    # -cpu max with pauth-impdef: pointer authentication's cheap implementation-defined
    # algorithm instead of QARMA, which under TCG costs more than the rest of the CPU.
    timeout -k 30s "$timeout_guest" qemu-system-aarch64 \
        -M virt -cpu max,pauth-impdef=on -accel tcg,thread=multi -smp 2 -m "$mem" \
        -nodefaults -no-reboot -display none -monitor none -serial "file:$res/console.log" \
        -kernel "$kroot/boot/vmlinuz-$kver" -initrd "$km/initramfs-$1.cpio" \
        -append "console=ttyAMA0 panic=-1 random.trust_cpu=on mitigations=off KM_TREE=$repo KM_STAGE2=$repo/scripts/kernel-matrix/guest.sh" \
        -fsdev "local,id=hostroot,path=$rootfs,security_model=none,readonly=on,multidevs=remap" \
        -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot \
        -fsdev "local,id=tree,path=$repo,security_model=none,readonly=on,multidevs=remap" \
        -device virtio-9p-pci,fsdev=tree,mount_tag=tree \
        -fsdev "local,id=results,path=$res,security_model=none,multidevs=remap" \
        -device virtio-9p-pci,fsdev=results,mount_tag=results \
        -device virtio-rng-pci </dev/null >"$res/qemu.log" 2>&1 || rc=$?
    return "$rc"
}

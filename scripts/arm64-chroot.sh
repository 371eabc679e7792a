#!/usr/bin/env bash
# The cross-build environment for aarch64 (and the declared minimum Rust): a Debian 13 (trixie)
# chroot, amd64 with arm64 as a foreign architecture, holding trixie's rustc and cargo 1.85
# (Cargo.toml's rust-version) with the standard library for both architectures, clippy,
# gcc-aarch64-linux-gnu, arm64 libelf/zlib, and the package tools. Made once with mmdebstrap and
# cached outside the tree (CI clones afresh); packages added to the list below are installed
# into the cached chroot the next time it is entered.
#
# `run` enters it with this tree bind-mounted at the same path, so commands and paths are the
# same inside and out. The pinned cargo-zigbuild and zig of `scripts/install-deps.sh package`
# are bind-mounted from the host (the chroot is amd64 too), so arm64 packages are linked exactly
# like the amd64 ones; so is the host's cargo-nextest (it archives tests for the arm64 guests). Every mount lives in a private mount namespace and goes with the command.
#
# Usage: scripts/arm64-chroot.sh make           build the chroot if missing, print its path
#        scripts/arm64-chroot.sh run CMD ARG... run CMD in the tree's directory inside it
# Env:   ARM64_CHROOT_CACHE (default /var/cache/calico-bpf-guard), CARGO_TARGET_DIR (default
#        target/trixie: cargo 1.85's builds kept apart from the host toolchain's)
# Needs root and mmdebstrap (scripts/install-deps.sh package).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
cache=${ARM64_CHROOT_CACHE:-/var/cache/calico-bpf-guard}

log() { echo "arm64-chroot: $*" >&2; }
die() {
    log "$*"
    exit 2
}

suite=trixie
mirrors=("deb http://deb.debian.org/debian $suite main"
    "deb http://deb.debian.org/debian $suite-updates main"
    "deb http://deb.debian.org/debian-security $suite-security main")
# rustc, cargo, rust-clippy: 1.85, the declared minimum. libstd-rust-dev:arm64: the aarch64
# standard library for the same compiler. gcc-aarch64-linux-gnu and the arm64 libelf and zlib:
# the test binaries for arm64 guests, linked like an everyday build. autotools, flex, bison,
# gawk: libbpf-sys's vendored libelf. The rest: what packaging/build-deb.sh and build-rpm.sh
# run (debhelper, lintian, rpm, rpmlint, debugedit, man for the man page check, git for
# copy-tree.sh, systemd and systemd-dev for the unit checks and directories).
packages=(rustc cargo rust-clippy rustfmt libstd-rust-dev:arm64
    gcc-aarch64-linux-gnu libc6-dev-arm64-cross libelf-dev zlib1g-dev libelf-dev:arm64 zlib1g-dev:arm64
    pkgconf autoconf automake autopoint flex bison gawk libtool make
    debhelper dpkg-dev lintian rpm rpmlint debugedit elfutils file cpio go-md2man systemd systemd-dev man-db git
    ca-certificates)
args=(--variant=buildd --architectures=amd64,arm64 "$suite")
key=$(printf '%s\n' "${args[@]}" "${mirrors[@]}" | sha256sum | cut -c1-12)
root=$cache/$suite-cross-$key

make_chroot() {
    [ "$(id -u)" = 0 ] || die "needs root"
    [ -f "$root/.ready" ] && { add_packages; return 0; }
    command -v mmdebstrap >/dev/null || die "mmdebstrap is missing: run scripts/install-deps.sh package"
    mkdir -p "$cache"
    # One builder at a time; a second waits and then finds it ready.
    exec 9>"$cache/.lock"
    flock 9
    [ -f "$root/.ready" ] && { add_packages; return 0; }
    log "building the $suite cross chroot in $root (once; a few minutes)"
    local t0=$SECONDS
    rm -rf "$root.part"
    mmdebstrap --quiet --mode=root --include="$(
        IFS=,
        echo "${packages[*]}"
    )" "${args[@]}" "$root.part" "${mirrors[@]}"
    touch "$root.part/.ready"
    # Older chroots (another package list) are of no further use.
    find "$cache" -maxdepth 1 -name "$suite-cross-*" ! -name "$suite-cross-$key" \
        ! -name "*.part" -exec rm -rf {} +
    mv "$root.part" "$root"
    log "built in $((SECONDS - t0)) s: $(du -sh "$root" | cut -f1)"
}

# add_packages: install what the list has and the cached chroot lacks (a quick check otherwise).
add_packages() {
    local missing
    missing=$(chroot "$root" dpkg-query -W -f='${db:Status-Abbrev} ${binary:Package}\n' "${packages[@]}" 2>&1 |
        awk '$1 != "ii" {print}' || true)
    [ -n "$missing" ] || return 0
    log "installing what the chroot lacks: ${missing//$'\n'/; }"
    unshare --mount --propagation private -- bash -euc '
        mount -t proc proc "$1/proc"
        mount --rbind /dev "$1/dev"
        cp /etc/resolv.conf "$1/etc/resolv.conf"
        shift
        chroot "$@"' add "$root" "$root" env DEBIAN_FRONTEND=noninteractive \
        sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@" >/dev/null' \
        apt "${packages[@]}"
}

# run CMD...: in a private mount namespace, bind the tree (and its git directory, when the tree
# is a worktree whose git directory lies elsewhere), the cargo registry and the pinned zig
# tools, then chroot and run CMD from the tree's directory. Plain cargo builds for
# --target aarch64-unknown-linux-gnu link with the cross gcc (rustc would call the amd64 cc),
# set in the chroot's cargo config rather than the environment: cargo-zigbuild sets its own
# linker only where the environment names none, and an environment variable would win over it
# (the packages' glibc 2.17 floor needs zig's).
run() {
    [ $# -gt 0 ] || die "run: no command"
    make_chroot
    local binds=("$repo")
    local common
    common=$(git -C "$repo" rev-parse --path-format=absolute --git-common-dir 2>/dev/null || true)
    case $common in "" | "$repo"/*) ;; *) binds+=("$common") ;; esac
    local cargo_home=${CARGO_HOME:-$HOME/.cargo}
    mkdir -p "$cargo_home/registry"
    local zigbuild nextest zigdir=
    zigbuild=$(command -v cargo-zigbuild || true)
    nextest=$(command -v cargo-nextest || true)
    if command -v zig >/dev/null; then
        zigdir=$(dirname "$(readlink -f "$(command -v zig)")")
    else
        zigdir=$(python3 -c 'import ziglang, os; print(os.path.dirname(ziglang.__file__))' 2>/dev/null || true)
    fi
    local target=${CARGO_TARGET_DIR:-$repo/target/trixie}
    mkdir -p "$target" "$root/root/.cargo"
    printf '[target.aarch64-unknown-linux-gnu]\nlinker = "aarch64-linux-gnu-gcc"\n' \
        >"$root/root/.cargo/config.toml"
    # shellcheck disable=SC2016
    unshare --mount --propagation private -- bash -euc '
        root=$1 registry=$2 zigbuild=$3 nextest=$4 zigdir=$5 nbinds=$6
        shift 6
        for d in "${@:1:$nbinds}"; do
            mkdir -p "$root$d"
            mount --bind "$d" "$root$d"
        done
        shift "$nbinds"
        mount -t proc proc "$root/proc"
        mount --rbind /dev "$root/dev"
        mount --rbind /sys "$root/sys"
        mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
        mkdir -p "$root/root/.cargo/registry"
        mount --bind "$registry" "$root/root/.cargo/registry"
        for tool in "$zigbuild" "$nextest"; do
            [ -n "$tool" ] || continue
            : >"$root/usr/local/bin/${tool##*/}"
            mount --bind "$tool" "$root/usr/local/bin/${tool##*/}"
        done
        [ -z "$zigdir" ] || { mkdir -p "$root/opt/zig"; mount --bind "$zigdir" "$root/opt/zig"; }
        cp /etc/resolv.conf "$root/etc/resolv.conf"
        # The host'"'"'s certificate authorities: cargo reaches crates.io as the host does.
        mount --bind -o ro /etc/ssl/certs "$root/etc/ssl/certs"
        exec chroot "$root" "$@"
    ' arm64-chroot "$root" "$cargo_home/registry" "$zigbuild" "$nextest" "$zigdir" "${#binds[@]}" "${binds[@]}" \
        env -i PATH=/opt/zig:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin HOME=/root \
        CARGO_HOME=/root/.cargo CARGO_TARGET_DIR="$target" CI="${CI:-}" \
        CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-auto}" TERM="${TERM:-dumb}" LANG=C.UTF-8 \
        PKG_CONFIG_ALLOW_CROSS=1 \
        PKG_CONFIG_PATH_aarch64_unknown_linux_gnu=/usr/lib/aarch64-linux-gnu/pkgconfig \
        ARCH="${ARCH:-}" ARM64_CHROOT=1 ${SOURCE_DATE_EPOCH:+SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH"} \
        ${CARGO_INCREMENTAL:+CARGO_INCREMENTAL="$CARGO_INCREMENTAL"} \
        bash -c 'cd "$0" && exec "$@"' "$PWD" "$@"
}

case ${1:-} in
make)
    make_chroot
    echo "$root"
    ;;
run)
    shift
    run "$@"
    ;;
*) die "usage: $0 make | run CMD [ARG...]" ;;
esac

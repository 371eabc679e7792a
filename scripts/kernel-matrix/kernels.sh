# shellcheck shell=bash disable=SC2154,SC2034 # (set and read by the sourcing script)
# Debian's own kernels for guests, sourced by scripts/kernel-matrix.sh and
# tests/boot/run-arm64.sh, which set km (the cache directory), busybox (the initramfs's default)
# and log and die, and read what fetch_kernel sets: fetch_kernel downloads and unpacks a suite's
# kernel package, make_initramfs packs a busybox stage 1 with the modules a guest needs to reach
# its root.

# fetch_kernel SUITE [ARCH]: sets kver (uname -r), kpkg ("package version") and kroot (the
# extracted package, modules indexed by depmod). ARCH: amd64 (default) or arm64.
fetch_kernel() {
    local suite=$1 arch=${2:-amd64}
    local d=$km/apt/$suite
    [ "$arch" = amd64 ] || d=$km/apt/$suite-$arch
    mkdir -p "$d/lists/partial" "$d/archives/partial" "$d/preferences.d"
    [ -f "$d/status" ] || : >"$d/status"
    local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    cat >"$d/sources.list" <<EOF
deb [signed-by=$keyring] http://deb.debian.org/debian $suite main
deb [signed-by=$keyring] http://deb.debian.org/debian $suite-updates main
deb [signed-by=$keyring] http://deb.debian.org/debian-security $suite-security main
EOF
    local opts=(-o "Dir::Etc::SourceList=$d/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o Dir::Etc::Preferences=/dev/null -o "Dir::Etc::PreferencesParts=$d/preferences.d"
        -o "Dir::State=$d" -o "Dir::State::Lists=$d/lists" -o "Dir::State::status=$d/status"
        -o "Dir::Cache=$d" -o "Dir::Cache::Archives=$d/archives" -o Dir::Cache::pkgcache=
        -o Dir::Cache::srcpkgcache= -o "APT::Architecture=$arch" -o "APT::Architectures::=$arch"
        -o APT::Sandbox::User=root -o Debug::NoLocking=true)
    # apt may keep the lists compressed (*_Packages.lz4), so match any suffix: otherwise the
    # lists never count as fresh, or a stale one lingers and points at a deleted package.
    if [ -n "${KM_REFRESH:-}" ] || [ -z "$(find "$d/lists" -maxdepth 1 -name '*_Packages*' -mmin -1440)" ]; then
        apt-get "${opts[@]}" -qq update >&2 || log "warning: cannot refresh the $suite lists; using what is cached"
    fi
    local pkg ver
    # awk reads to the end: exiting at the first match would kill apt-cache with SIGPIPE
    # mid-write, which pipefail and set -e turn into the whole matrix exiting 141.
    pkg=$(apt-cache "${opts[@]}" depends "linux-image-$arch" 2>/dev/null |
        awk -v re="^linux-image-.*-$arch\$" '$1 == "Depends:" && $2 ~ re && !p {p = $2} END {print p}')
    [ -n "$pkg" ] || {
        log "$suite: cannot resolve linux-image-$arch"
        return 1
    }
    ver=$(apt-cache "${opts[@]}" show --no-all-versions "$pkg" | awk '$1 == "Version:" && !v {v = $2} END {print v}')
    # The lists can name a kernel whose file the mirror does not serve (bullseye-security's
    # arm64 5.10.262-1 answered 404 on 2026-12-02): then the older kernels linux-image-ARCH
    # named before stand in, newest first, and the log and the row say which one ran.
    local older
    older=$(apt-cache "${opts[@]}" show "linux-image-$arch" 2>/dev/null |
        sed -n "s/^Depends:.*\(linux-image-[^ ,]*-$arch\) (= \([^)]*\)).*/\1 \2/p" | sort -rV)
    local deb=
    while read -r pkg ver; do
        [ -n "$pkg" ] || continue
        deb="$km/cache/${pkg}_${ver}_$arch.deb"
        [ -f "$deb" ] && break
        log "$suite: downloading $pkg $ver"
        (cd "$km/cache" && apt-get "${opts[@]}" -qq download "$pkg:$arch=$ver") >&2 && [ -f "$deb" ] && break
        log "$suite: cannot download $pkg $ver"
        deb=
    done < <(echo "$pkg $ver" && grep -vxF "$pkg $ver" <<<"$older")
    [ -n "$deb" ] || return 1
    kpkg="$pkg $ver"
    kroot="$km/cache/${pkg}_${ver}"
    if [ ! -f "$kroot/.ready" ]; then
        rm -rf "$kroot"
        dpkg-deb -x "$deb" "$kroot"
        # Newer packages ship /usr/lib/modules only; modprobe -d looks in DIR/lib/modules.
        [ -e "$kroot/lib" ] || ln -s usr/lib "$kroot/lib"
    fi
    local vmlinuz
    vmlinuz=$(find "$kroot/boot" -maxdepth 1 -name 'vmlinuz-*' | head -n 1)
    [ -n "$vmlinuz" ] || {
        log "$suite: no vmlinuz in $deb"
        return 1
    }
    kver=${vmlinuz##*/vmlinuz-}
    if [ ! -f "$kroot/.ready" ]; then
        depmod -b "$kroot" "$kver"
        touch "$kroot/.ready"
    fi
}

# make_initramfs ROOT KVER OUT [BUSYBOX [INIT MODULE...]]: busybox (default: this host's),
# stage 1 (default: the kernel matrix's init), and the modules needed to mount the guest's root
# (default: the host's / over virtio-9p), with their dependencies, in load order (built-in ones
# are skipped), decompressed so busybox insmod can load them on any kernel.
make_initramfs() {
    local root=$1 kver=$2 out=$3 bb=${4:-$busybox} init=${5:-scripts/kernel-matrix/init} dir
    local modules=("${@:6}")
    [ ${#modules[@]} -gt 0 ] || modules=(virtio_pci virtio_rng 9pnet_virtio 9p)
    dir=$(mktemp -d)
    mkdir -p "$dir/bin" "$dir/dev" "$dir/proc" "$dir/sys" "$dir/modules" "$dir/newroot"
    mknod -m 0600 "$dir/dev/console" c 5 1
    cp "$bb" "$dir/bin/busybox"
    cp "$init" "$dir/init"
    : >"$dir/modules/order"
    local m path name
    for m in "${modules[@]}"; do
        modprobe --show-depends -d "$root" -S "$kver" "$m"
    done | awk '$1 == "insmod" && !seen[$2]++ {print $2}' | while read -r path; do
        name=${path##*/}
        case $name in
        *.ko.xz) xz -dc "$path" >"$dir/modules/${name%.xz}" && name=${name%.xz} ;;
        *.ko.zst) zstd -dcq "$path" >"$dir/modules/${name%.zst}" && name=${name%.zst} ;;
        *.ko.gz) gzip -dc "$path" >"$dir/modules/${name%.gz}" && name=${name%.gz} ;;
        *) cp "$path" "$dir/modules/$name" ;;
        esac
        echo "$name" >>"$dir/modules/order"
    done
    (cd "$dir" && find . -print0 | cpio --null -o -H newc --quiet) >"$out"
    rm -rf "$dir"
}

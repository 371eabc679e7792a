#!/usr/bin/env bash
# make image: the OCI image of calico-bpf-guard-sync, FROM scratch, holding only the static
# binary, for every architecture in ARCHES, as one multi-architecture image index. Offline:
# scratch needs no registry and the Containerfile runs nothing, so a foreign architecture
# needs no emulator.
#
#   target/image/calico-bpf-guard-sync-<version>.oci.tar
#       the image index (one manifest per architecture) and its images, as one OCI archive:
#       `skopeo copy --all oci-archive:<file> docker://REGISTRY/calico-bpf-guard-sync:<version>`
#   localhost/calico-bpf-guard-sync:<version>-<arch>   each architecture's image, in podman
#   localhost/calico-bpf-guard-sync:<version>          this machine's architecture's (the name
#                                                      deploy/kubernetes gives the DaemonSet)
#   target/image/sizes.txt                             what each weighs
#
# The index is not kept in podman's storage: podman 4.3 (Debian 12) cannot list images while a
# manifest list of local images is there (`podman images` fails with "locating item named
# manifest-sha256:…"), so the list lives only long enough to be written to the archive.
#
# Needs root, podman and binutils (scripts/install-deps.sh deploy).
set -euo pipefail
cd "$(dirname "$0")/.."

# Every architecture the packages are built for. arm64 builds in the cross chroot of issue 17
# (scripts/arm64-chroot.sh, Debian trixie's Rust 1.85 with the aarch64 standard library):
# ARCHES="amd64 arm64". The default is amd64 alone: arm64 costs about 8 min of CPU, more than
# CI's budget has room for.
ARCHES=${ARCHES:-amd64}
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' sync/Cargo.toml | head -n1)
repo=localhost/calico-bpf-guard-sync
name=$repo:$version
# The index's name while it is built; in the archive it is $name.
index=$repo:$version-index
out=target/image
archive=$out/calico-bpf-guard-sync-$version.oci.tar
# Reproducible: the images' timestamps are the last commit's, not the build's.
epoch=$(git log -1 --format=%ct 2>/dev/null || echo 0)
case "$(uname -m)" in
  x86_64) native=amd64 ;;
  aarch64) native=arm64 ;;
  *) native=$(uname -m) ;;
esac

# Linked statically against glibc (-C target-feature=+crt-static): the image has no loader and
# no libc. It never resolves a host name through NSS, which static glibc cannot do: the API
# server's address is an IP (KUBERNETES_SERVICE_HOST).
build_amd64() {
  CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked -p calico-bpf-guard-sync --target x86_64-unknown-linux-gnu >&2
  echo target/x86_64-unknown-linux-gnu/release/calico-bpf-guard-sync
}

# The same, for aarch64, in the cross chroot: its gcc links, its arm64 libc.a is linked in.
build_arm64() {
  [ -x scripts/arm64-chroot.sh ] || { echo "image: arm64 needs scripts/arm64-chroot.sh (issue 17)" >&2; exit 1; }
  scripts/arm64-chroot.sh run env "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS=-C target-feature=+crt-static" \
    CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
    cargo build --release --locked -p calico-bpf-guard-sync --target aarch64-unknown-linux-gnu >&2
  echo "${CARGO_TARGET_DIR:-target/trixie}/aarch64-unknown-linux-gnu/release/calico-bpf-guard-sync"
}

# No dynamic loader, no shared library: anything else would not start FROM scratch.
check_static() {
  if grep -q 'INTERP' <<<"$(readelf -lW "$1")" || grep -q '(NEEDED)' <<<"$(readelf -dW "$1")"; then
    echo "image: $1 is not a static binary:" >&2
    readelf -dW "$1" | grep '(NEEDED)' >&2 || true
    exit 1
  fi
}

ctx=$(mktemp -d)
cleanup() {
  rm -rf "$ctx"
  if podman manifest exists "$index" 2>/dev/null; then podman manifest rm "$index" >/dev/null; fi
}
trap cleanup EXIT
# A list left by an interrupted run (it would also keep `podman images` from working).
cleanup
mkdir -p "$ctx" "$out"
: >"$out/sizes.txt"

podman manifest create "$index" >/dev/null
for arch in $ARCHES; do
  case "$arch" in
    amd64) bin=$(build_amd64) ;;
    arm64) bin=$(build_arm64) ;;
    *) echo "image: no static build route for $arch" >&2; exit 1 ;;
  esac
  check_static "$bin"
  install -m 0755 "$bin" "$ctx/calico-bpf-guard-sync"
  before=$(podman image inspect --format '{{.Id}}' "$name-$arch" 2>/dev/null || true)
  # --layers=false: no intermediate images left behind for the cache.
  podman build --quiet --layers=false --platform "linux/$arch" --timestamp "$epoch" \
    --build-arg "VERSION=$version" -f deploy/image/Containerfile -t "$name-$arch" "$ctx" >/dev/null
  podman manifest add "$index" "containers-storage:$name-$arch" >/dev/null
  if [ "$arch" = "$native" ]; then podman tag "$name-$arch" "$name"; fi
  # The image this one replaces, now untagged: nothing else refers to it.
  if [ -n "$before" ] && [ "$before" != "$(podman image inspect --format '{{.Id}}' "$name-$arch")" ]; then
    podman rmi "$before" >/dev/null 2>&1 || true
  fi
  printf '%s\t%s bytes (binary %s bytes)\n' "$name-$arch" \
    "$(podman image inspect --format '{{.Size}}' "$name-$arch")" "$(stat -c %s "$bin")" | tee -a "$out/sizes.txt"
done

rm -f "$archive"
podman manifest push --quiet --all "$index" "oci-archive:$archive:$name"
printf '%s\t%s bytes (OCI archive: %s)\n' "$archive" "$(stat -c %s "$archive")" "$ARCHES" | tee -a "$out/sizes.txt"

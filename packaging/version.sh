# shellcheck shell=bash
# Sourced by the package builds: one version, the crate's, and the packaging files must agree.
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
deb_version=$(dpkg-parsechangelog -l debian/changelog -S Version 2>/dev/null || head -n1 debian/changelog | sed 's/.*(\(.*\)).*/\1/')
rpm_version=$(sed -n 's/^Version: *//p' rpm/calico-bpf-guard.spec)
if [ "$VERSION" != "$deb_version" ] || [ "$VERSION" != "$rpm_version" ]; then
  echo "version mismatch: Cargo.toml $VERSION, debian/changelog $deb_version, rpm spec $rpm_version" >&2
  exit 1
fi

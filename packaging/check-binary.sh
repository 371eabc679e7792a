#!/usr/bin/env bash
# The shipped binary installs wherever glibc is 2.17 or later: it needs no glibc symbol version
# newer than GLIBC_2.17 and no shared library but the C runtime (libc, libpthread, libdl and the
# dynamic loader). libelf, zlib and libbpf are linked in (the crate's `static` feature).
# Usage: packaging/check-binary.sh BINARY
set -euo pipefail
bin=${1:?usage: $0 BINARY}
floor=2.17
fail=0
bad() { echo "not ok: $*" >&2; fail=1; }

# Every symbol version the binary asks of glibc (its version needs); GLIBC_PRIVATE or anything
# unnumbered is as bad as a version above the floor. readelf, unlike objdump, reads an aarch64
# binary on an x86_64 host too.
versions=$(readelf -V -W "$bin" | sed -n '/^Version needs section/,$p' | grep -o 'Name: GLIBC_[^ ]*' |
  sed 's/^Name: //' | sort -uV)
[ -n "$versions" ] || bad "no GLIBC symbol versions found: is $bin a dynamically linked glibc binary?"
for v in $versions; do
  n=${v#GLIBC_}
  if ! [[ $n =~ ^[0-9]+(\.[0-9]+)*$ ]]; then
    bad "needs $v"
  elif [ "$(printf '%s\n%s\n' "$n" "$floor" | sort -V | tail -n1)" != "$floor" ]; then
    bad "needs $v, newer than GLIBC_$floor"
  fi
done

needed=$(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p')
[ -n "$needed" ] || bad "no NEEDED entries: is $bin dynamically linked?"
for lib in $needed; do
  case $lib in
    libc.so.6 | libpthread.so.0 | libdl.so.2 | ld-linux*.so.*) ;;
    *) bad "needs the shared library $lib: only the C runtime is allowed" ;;
  esac
done

[ "$fail" = 0 ] &&
  echo "ok: needs at most $(tail -n1 <<<"$versions") (floor GLIBC_$floor), links only ${needed//$'\n'/ }"
exit "$fail"

#!/usr/bin/env bash
# The debug symbols package matches the binary it was split from: the shipped binary is stripped
# and names its debug file by GNU build-id; the debug symbols package holds that file under
# /usr/lib/debug/.build-id/, with DWARF that resolves the guard's own code to its source lines.
# Usage: packaging/check-debug.sh BINARY DEBUG_ROOT   (DEBUG_ROOT: the unpacked -dbgsym or
# -debuginfo package)
set -euo pipefail
bin=${1:?usage: $0 BINARY DEBUG_ROOT}
root=${2:?usage: $0 BINARY DEBUG_ROOT}
fail=0
bad() { echo "not ok: $*" >&2; fail=1; }
# (readelf complains about the debug file's empty .interp; its section list is still right.)
sections() { readelf -W -S "$1" 2>/dev/null | sed -n 's/^ *\[ *[0-9]*\] \([^ ]*\) .*/\1/p'; }
build_id() { readelf -n "$1" 2>/dev/null | sed -n 's/^ *Build ID: \([0-9a-f]*\)$/\1/p'; }

id=$(build_id "$bin")
[ -n "$id" ] || { echo "not ok: $bin has no GNU build-id" >&2; exit 1; }
shipped=$(sections "$bin")
for s in .symtab .debug_info .debug_line; do
  if grep -qx -- "$s" <<<"$shipped"; then bad "$bin still has $s: not stripped"; fi
done

# rpm's build-id entry is a relative symlink to the file under /usr/lib/debug/<path>; dpkg's is
# the file. Either resolves inside the unpacked package.
debug=$root/usr/lib/debug/.build-id/${id:0:2}/${id:2}.debug
if [ ! -f "$debug" ]; then
  bad "no debug file for build-id $id in $root"
else
  have=$(sections "$debug")
  for s in .symtab .debug_info .debug_line; do
    grep -qx -- "$s" <<<"$have" || bad "the debug file has no $s"
  done
  debug_id=$(build_id "$debug")
  [ "$debug_id" = "$id" ] || bad "the debug file's build-id is $debug_id, the binary's $id"
  # The guard's own functions, from the debug file's symbols to lines of its src/: every one must
  # resolve to a line, and most to the guard's sources (with LTO a function can begin with code
  # inlined from the standard library, /rustc/..., or from a crate, .../registry/src/...).
  addrs=$(nm --defined-only "$debug" | awk '$2 ~ /^[tT]$/ && $3 ~ /^_ZN16calico_bpf_guard/ { print "0x" $1 }')
  total=$(grep -c . <<<"$addrs" || true)
  lines=$([ "$total" -gt 0 ] && addr2line -e "$debug" <<<"$addrs" || true)
  unresolved=$(grep -c '^??' <<<"$lines" || true)
  own=$(grep -E '/src/.*\.rs:[0-9]+' <<<"$lines" | grep -cvE '^/rustc/|/registry/src/' || true)
  if [ "$total" -eq 0 ]; then
    bad "the debug file names none of the guard's functions"
  elif [ "$unresolved" -gt 0 ] || [ $((2 * own)) -le "$total" ]; then
    bad "of the guard's $total functions, $unresolved resolve to no line and only $own to its src/"
  else
    echo "ok: stripped binary, build-id $id; $own of the guard's $total functions resolve to its src/"
  fi
fi
exit "$fail"

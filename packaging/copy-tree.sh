#!/usr/bin/env bash
# Copy the source tree a package is built from into DEST: every file git knows or would add
# (committed or not, so a package build sees the working tree), never target/ or .git.
# Usage: packaging/copy-tree.sh DEST
set -euo pipefail
dest=$(realpath -m "${1:?usage: $0 DEST}")
cd "$(dirname "$0")/.."
rm -rf "$dest"
mkdir -p "$dest"
# --cached also lists files deleted from the working tree; skip those.
git ls-files -z --cached --others --exclude-standard |
  while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
  tar --null -T - -cf - | tar -xf - -C "$dest"

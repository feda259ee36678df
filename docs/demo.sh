#!/usr/bin/env bash
# `make demo`: a real backup -> list -> restore round trip into a local directory repository.
set -euo pipefail
PACKVAULT=${1:-packvault}
work=$(mktemp -d "${TMPDIR:-/tmp}/packvault-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT
export PACKVAULT_PASSPHRASE=demo-passphrase
export PACKVAULT_CACHE_DIR="$work/cache" PACKVAULT_CONFIG_DIR="$work/config"

echo "== making a small source tree in $work/src"
mkdir -p "$work/src/docs" "$work/src/data"
for i in $(seq 1 50); do printf 'line %s of a compressible text file\n' $(seq 1 200) > "$work/src/docs/file$i.txt"; done
head -c 20000000 /dev/urandom > "$work/src/data/random.bin"
cp "$work/src/data/random.bin" "$work/src/data/copy-of-random.bin"   # deduplicated
ln -s ../docs/file1.txt "$work/src/data/link-to-file1"
ln "$work/src/docs/file2.txt" "$work/src/docs/hardlink-to-file2"

echo; echo "== packvault init $work/repo"
"$PACKVAULT" init "$work/repo"
echo; echo "== packvault create $work/repo::first $work/src"
"$PACKVAULT" create --stats "$work/repo::first" "$work/src"
echo; echo "== a second, unchanged backup (files cache: nothing is read again)"
"$PACKVAULT" create "$work/repo::second" "$work/src"
echo; echo "== packvault list $work/repo"
"$PACKVAULT" list "$work/repo"
echo; echo "== packvault extract $work/repo::second --target $work/restore"
"$PACKVAULT" extract "$work/repo::second" --target "$work/restore"
echo; echo "== comparing the restored tree with the source"
diff -r --no-dereference "$work/src" "$work/restore/${work#/}/src" && echo "restored tree is identical to the source"

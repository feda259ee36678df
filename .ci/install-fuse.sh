#!/usr/bin/env bash
# Install libfuse 3 and fusermount3 (Debian's fuse3 package) for the `packvault mount` tests.
#
# Idempotent: nothing happens when fusermount3 and libfuse 3 are already there.  Never fails the run: on a
# machine without apt-get (or without the rights to use it) it says so and exits 0; the mount tests then
# fail under CI=true (CI must run them) and are skipped elsewhere with the reason.
set -uo pipefail

have_fuse() {
    command -v fusermount3 >/dev/null 2>&1 && ldconfig -p 2>/dev/null | grep -q 'libfuse3\.so'
}

if have_fuse; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-fuse: apt-get not found; install libfuse 3 (the fuse3 package) by hand to run the mount tests" >&2
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "install-fuse: not root and no password-less sudo; install the fuse3 package by hand" >&2
        exit 0
    fi
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y -q fuse3 >"$log" 2>&1; then
    # the package lists may be missing or stale on a fresh machine
    $SUDO apt-get update -q >>"$log" 2>&1
    $SUDO apt-get install -y -q fuse3 >>"$log" 2>&1
fi

if have_fuse; then
    echo "install-fuse: fuse3 installed"
else
    tail -n 20 "$log" >&2
    echo "install-fuse: could not install the fuse3 package (see apt-get's output above); the mount tests need it" >&2
fi
exit 0

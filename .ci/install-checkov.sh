#!/usr/bin/env bash
# Install checkov (Terraform static analysis) into its own virtual environment, .venv-checkov.
#
# Why a separate venv: checkov pins many heavy dependencies (boto3, networkx, ...) at versions that would fight
# the project's own; keeping it apart means `make install` stays small and checkov can't break the test venv.
# Idempotent: a stamp file records the pinned spec, so a second run is a no-op unless the pin changes.
set -euo pipefail

cd "$(dirname "$0")/.."

CHECKOV_SPEC="${CHECKOV_SPEC:-checkov==3.3.*}"
PYTHON="${CHECKOV_PYTHON:-python3}"
VENV=".venv-checkov"
STAMP="$VENV/.installed-spec"

if [ -x "$VENV/bin/checkov" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$CHECKOV_SPEC" ]; then
    exit 0
fi

fail() {
    echo "install-checkov: $*" >&2
    exit 1
}

command -v "$PYTHON" >/dev/null 2>&1 || fail "'$PYTHON' not found; set CHECKOV_PYTHON to a Python 3.9+ interpreter"

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV" || fail "could not create $VENV with '$PYTHON -m venv' (is the venv module installed?)"
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >"$log" 2>&1 \
    || ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$CHECKOV_SPEC" >>"$log" 2>&1; then
    cat "$log" >&2
    fail "pip could not install '$CHECKOV_SPEC' into $VENV (see the pip output above)"
fi

"$VENV/bin/checkov" --version >/dev/null 2>&1 || fail "$VENV/bin/checkov was installed but does not run"
echo "$CHECKOV_SPEC" >"$STAMP"
echo "install-checkov: $("$VENV/bin/checkov" --version) ready in $VENV"

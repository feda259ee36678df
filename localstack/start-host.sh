#!/usr/bin/env bash
# Start LocalStack (S3 only) on this host, without Docker, for the integration tests.
#
#   bash localstack/start-host.sh [PORT]     (default 4566)
#
# Creates .venv-localstack (Python 3.13, pinned localstack-core) on first use, starts the server in host
# mode with its state inside the repository (.localstack-fs), logs to localstack.log, waits until S3
# reports "running" and writes the pid to .localstack.pid.  Idempotent: a running instance on the same
# port is reused.  Exits non-zero with a message when anything fails.
#
# Optional environment:
#   SERVICES=s3,stepfunctions,sts   services to start (comma-separated, default s3); start-up waits for all of
#                               them. Step Functions needs sts (it assumes the state machine's role) and a few
#                               more packages in the venv, installed on first use (SFN_PINS below).
#   LOCALSTACK_NAME=sfn         a second, independent instance: its pid file, log and state live in
#                               .venv-localstack/ under that name, so it never touches the default instance
#                               (which `make test` starts and stops).  Stop it with the same variable set.
set -euo pipefail

PORT="${1:-${LOCALSTACK_PORT:-4566}}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv-localstack"
PIDFILE="$ROOT/.venv-localstack/localstack.pid"  # inside an ignored directory
LOG="$ROOT/localstack.log"
FSROOT="$ROOT/.localstack-fs"
SERVICES="${SERVICES:-s3}"
NAME="${LOCALSTACK_NAME:-}"
if [[ -n "$NAME" ]]; then
    PIDFILE="$VENV/localstack-$NAME.pid"
    LOG="$VENV/localstack-$NAME.log"
    FSROOT="$VENV/fs-$NAME"
fi
HEALTH="http://127.0.0.1:$PORT/_localstack/health"
TIMEOUT="${LOCALSTACK_START_TIMEOUT:-90}"
PINS=('localstack-core[base-runtime]==2026.3.0' 'cbor2<6' 'pyopenssl<26' 'cryptography<47' 'service_identity')
# What the Step Functions provider imports beyond base-runtime (a subset of localstack-core[runtime], which would
# also pull in every other service's dependencies).
SFN_PINS=('antlr4-python3-runtime==4.13.2' 'jsonpath-ng==1.7.0' 'jpype1==1.7.1' 'moto-ext==5.1.54')

say() { echo "localstack/start-host.sh: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

[[ "$PORT" =~ ^[0-9]+$ ]] || die "port must be a number, got '$PORT'"
[[ "$NAME" =~ ^[A-Za-z0-9_-]*$ ]] || die "LOCALSTACK_NAME may contain only letters, digits, '-' and '_', got '$NAME'"
[[ "$SERVICES" =~ ^[a-z0-9-]+(,[a-z0-9-]+)*$ ]] || die "SERVICES must be a comma-separated list such as s3,stepfunctions, got '$SERVICES'"

# every requested service reports running or available
s3_running() {
    local health service
    health="$(curl -fsS --max-time 2 "$HEALTH" 2>/dev/null)" || return 1
    for service in ${SERVICES//,/ }; do
        grep -Eq "\"$service\": *\"(running|available)\"" <<<"$health" || return 1
    done
}

find_python313() {
    local candidate
    if [[ -n "${LOCALSTACK_PYTHON:-}" ]]; then
        echo "$LOCALSTACK_PYTHON"; return 0
    fi
    if command -v python3.13 >/dev/null 2>&1 && python3.13 -c 'import sys' >/dev/null 2>&1; then
        command -v python3.13; return 0
    fi
    # a pyenv shim exists but 3.13 is not the selected version: ask pyenv for the interpreter itself
    if command -v pyenv >/dev/null 2>&1; then
        for candidate in "$(pyenv root)"/versions/3.13*/bin/python3.13; do
            if [[ -x "$candidate" ]]; then echo "$candidate"; return 0; fi
        done
    fi
    return 1
}

if [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null && s3_running; then
    say "already running (pid $(cat "$PIDFILE")) on port $PORT"
    exit 0
fi
if s3_running; then
    die "something else already serves LocalStack on port $PORT (not started by this script); stop it first"
fi
rm -f "$PIDFILE"

if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import localstack.runtime.main' >/dev/null 2>&1; then
    PY313="$(find_python313)" || die "python3.13 not found (LocalStack needs it); set LOCALSTACK_PYTHON=/path/to/python3.13"
    say "creating $VENV with $PY313 (first run takes a few minutes)"
    rm -rf "$VENV"
    "$PY313" -m venv "$VENV" || die "could not create $VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip || die "pip upgrade failed"
    "$VENV/bin/python" -m pip install -q "${PINS[@]}" || die "installing LocalStack failed"
fi

if [[ ",$SERVICES," == *,stepfunctions,* ]] \
    && ! "$VENV/bin/python" -c 'import antlr4, jsonpath_ng, jpype, moto' >/dev/null 2>&1; then
    say "installing the Step Functions provider's dependencies into $VENV"
    "$VENV/bin/python" -m pip install -q "${SFN_PINS[@]}" || die "installing the Step Functions dependencies failed"
fi

# LocalStack keeps one open file per object above 512 KiB
ulimit -n "$(ulimit -Hn)" 2>/dev/null || say "warning: could not raise the open-file limit (now $(ulimit -n))"

mkdir -p "$FSROOT"
say "starting LocalStack ($SERVICES) on 127.0.0.1:$PORT (log: $LOG)"
(
    cd "$ROOT"
    exec env OVERRIDE_IN_DOCKER=0 FILESYSTEM_ROOT="$FSROOT" SERVICES="$SERVICES" EAGER_SERVICE_LOADING=1 \
        GATEWAY_LISTEN="127.0.0.1:$PORT" DNS_ADDRESS=0 DISABLE_EVENTS=1 SKIP_SSL_CERT_DOWNLOAD=1 \
        "$VENV/bin/python" -m localstack.runtime.main >"$LOG" 2>&1
) &
PID=$!
echo "$PID" >"$PIDFILE"

deadline=$((SECONDS + TIMEOUT))
until s3_running; do
    if ! kill -0 "$PID" 2>/dev/null; then
        rm -f "$PIDFILE"
        tail -n 30 "$LOG" >&2 || true
        die "LocalStack exited during start-up (see $LOG)"
    fi
    if ((SECONDS >= deadline)); then
        tail -n 30 "$LOG" >&2 || true
        bash "$ROOT/localstack/stop.sh" || true
        die "$SERVICES not running after ${TIMEOUT}s (see $LOG)"
    fi
    sleep 0.5
done
say "ready: http://127.0.0.1:$PORT (pid $PID)"

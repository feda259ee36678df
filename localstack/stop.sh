#!/usr/bin/env bash
# Stop the LocalStack started by localstack/start-host.sh and remove its temporary storage.
#
# Sends SIGTERM, waits for a clean exit (LocalStack needs about 5 s), then SIGKILL if needed.  Removes
# .localstack-fs and /tmp/localstack-s3-storage (where LocalStack keeps object data whatever TMPDIR says).
# Idempotent: nothing running is not an error.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PIDFILE="$ROOT/.venv-localstack/localstack.pid"  # inside an ignored directory
TIMEOUT="${LOCALSTACK_STOP_TIMEOUT:-20}"

say() { echo "localstack/stop.sh: $*" >&2; }

if [[ -f "$PIDFILE" ]]; then
    PID="$(cat "$PIDFILE")"
    if [[ "$PID" =~ ^[0-9]+$ ]] && kill -0 "$PID" 2>/dev/null; then
        say "stopping LocalStack (pid $PID)"
        kill -TERM "$PID" 2>/dev/null || true
        deadline=$((SECONDS + TIMEOUT))
        while kill -0 "$PID" 2>/dev/null && ((SECONDS < deadline)); do
            sleep 0.25
        done
        if kill -0 "$PID" 2>/dev/null; then
            say "still running after ${TIMEOUT}s, killing it"
            kill -KILL "$PID" 2>/dev/null || true
            sleep 0.5
        fi
        if kill -0 "$PID" 2>/dev/null; then
            say "ERROR: pid $PID does not exit"
            exit 1
        fi
    else
        say "not running (stale pid file)"
    fi
    rm -f "$PIDFILE"
else
    say "not running (no pid file)"
fi

rm -rf "$ROOT/.localstack-fs" "${TMPDIR:-/tmp}/localstack-s3-storage" /tmp/localstack-s3-storage
say "stopped and cleaned up"

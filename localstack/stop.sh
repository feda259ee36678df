#!/usr/bin/env bash
# Stop the LocalStack started by localstack/start-host.sh and remove its temporary storage.
#
# Sends SIGTERM, waits for a clean exit (LocalStack needs about 5 s), then SIGKILL if needed.  Removes
# .localstack-fs and /tmp/localstack-s3-storage (where LocalStack keeps object data whatever TMPDIR says).
# Idempotent: nothing running is not an error.
#
# With LOCALSTACK_NAME set (as for start-host.sh) it stops that named instance only and removes only its own
# state: /tmp/localstack-s3-storage is shared by every LocalStack on the host, so it stays for the others.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PIDFILE="$ROOT/.venv-localstack/localstack.pid"  # inside an ignored directory
TIMEOUT="${LOCALSTACK_STOP_TIMEOUT:-20}"

say() { echo "localstack/stop.sh: $*" >&2; }

# A killed process that its parent has not reaped yet (a zombie) has exited; kill -0 alone would say it lives.
alive() {
    kill -0 "$1" 2>/dev/null && [[ "$(ps -o stat= -p "$1" 2>/dev/null)" != Z* ]]
}

NAME="${LOCALSTACK_NAME:-}"
if [[ -n "$NAME" ]]; then
    [[ "$NAME" =~ ^[A-Za-z0-9_-]+$ ]] || { say "ERROR: invalid LOCALSTACK_NAME '$NAME'"; exit 1; }
    PIDFILE="$ROOT/.venv-localstack/localstack-$NAME.pid"
fi

if [[ -f "$PIDFILE" ]]; then
    PID="$(cat "$PIDFILE")"
    if [[ "$PID" =~ ^[0-9]+$ ]] && alive "$PID"; then
        say "stopping LocalStack (pid $PID)"
        kill -TERM "$PID" 2>/dev/null || true
        deadline=$((SECONDS + TIMEOUT))
        while alive "$PID" && ((SECONDS < deadline)); do
            sleep 0.25
        done
        if alive "$PID"; then
            say "still running after ${TIMEOUT}s, killing it"
            kill -KILL "$PID" 2>/dev/null || true
            sleep 0.5
        fi
        if alive "$PID"; then
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

if [[ -n "$NAME" ]]; then
    rm -rf "$ROOT/.venv-localstack/fs-$NAME"
else
    rm -rf "$ROOT/.localstack-fs" "${TMPDIR:-/tmp}/localstack-s3-storage" /tmp/localstack-s3-storage
fi
say "stopped and cleaned up"

#!/usr/bin/env bash
# A real Docker registry (Debian's distribution registry 2.x) on 127.0.0.1 for tests.
#
# Usage:
#   registry.sh start STATE_DIR [--user U (--password P | --password-stdin)] [--no-auth]
#   registry.sh stop  STATE_DIR
#
# start prints `REGISTRY=127.0.0.1:PORT` on stdout (logs go to stderr).
# Why a real registry: pushes, logins and pulls must exercise the same /v2/ API
# and htpasswd auth a user's registry has; moto's ECR has no /v2/ at all.
#
# STATE_DIR layout:
#   config.yml      registry config          htpasswd   bcrypt entries (0600)
#   data/           blob + manifest storage  port, pid  of the running registry
#   registry.log    ACCESS log only: one Apache combined-format line per HTTP
#                   request (tests count requests from it)
#   registry-app.log  the registry's own (logrus) log
#
# Auth: htpasswd (bcrypt) with --user/--password; with neither, a random user and
# password are generated and written to STATE_DIR/username and STATE_DIR/password
# (0600) — never printed. --no-auth serves anonymously.
# Idempotent: start reuses a live registry of STATE_DIR when its credentials
# match, else restarts it; stop on a stopped registry is a no-op.
set -euo pipefail

usage() {
    echo "usage: $0 start STATE_DIR [--user U (--password P | --password-stdin)] [--no-auth]" >&2
    echo "       $0 stop STATE_DIR" >&2
    exit 2
}

LOG_PREFIX=registry
# shellcheck source=docker/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# -ge 2 ] || usage
ACTION=$1
STATE_DIR=$2
shift 2
USER_NAME=""
PASSWORD=""
HAVE_PASSWORD=0
AUTH=1
while [ $# -gt 0 ]; do
    case $1 in
        --user) [ $# -ge 2 ] || usage; USER_NAME=$2; shift 2 ;;
        --password) [ $# -ge 2 ] || usage; PASSWORD=$2; HAVE_PASSWORD=1; shift 2 ;;
        --password-stdin) IFS= read -r PASSWORD || true; HAVE_PASSWORD=1; shift ;;
        --no-auth) AUTH=0; shift ;;
        *) usage ;;
    esac
done

PIDFILE="$STATE_DIR/pid"
PORTFILE="$STATE_DIR/port"

running_pid() {
    local pid
    [ -s "$PIDFILE" ] || return 1
    pid=$(cat "$PIDFILE")
    alive "$pid" || return 1
    # Guard against pid reuse: it must be a registry serving our config.
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$STATE_DIR/config.yml" || return 1
    echo "$pid"
}

# Listening on the port means serving. A TCP connect, not an HTTP request, so our
# probes never show up in the access log that tests count requests from.
answers() {
    python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2).close()' "$1" 2>/dev/null
}

stop() {
    local pid i
    if pid=$(running_pid); then
        kill "$pid" 2>/dev/null || true
        for i in $(seq 1 50); do
            alive "$pid" || break
            if [ "$i" -eq 50 ]; then kill -9 "$pid" 2>/dev/null || true; fi
            sleep 0.1
        done
        log "stopped registry pid $pid"
    fi
    rm -f "$PIDFILE"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

case $ACTION in
    stop)
        stop
        exit 0
        ;;
    start) ;;
    *) usage ;;
esac

if [ "$AUTH" -eq 1 ]; then
    if [ -z "$USER_NAME" ] && [ "$HAVE_PASSWORD" -eq 0 ]; then
        if [ -s "$STATE_DIR/username" ] && [ -s "$STATE_DIR/password" ]; then
            USER_NAME=$(cat "$STATE_DIR/username")
            PASSWORD=$(cat "$STATE_DIR/password")
        else
            USER_NAME="u$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
            PASSWORD=$(od -An -N18 -tx1 /dev/urandom | tr -d ' \n')
        fi
        GENERATED=1
    else
        GENERATED=0
    fi
    [ -n "$USER_NAME" ] || die "--password given without --user"
    [ "$HAVE_PASSWORD" -eq 1 ] || [ "$GENERATED" -eq 1 ] || die "--user given without --password/--password-stdin"
    [ -n "$PASSWORD" ] || die "empty password"
    case $USER_NAME in *:*|*[[:space:]]*) die "user name must not contain ':' or whitespace" ;; esac
fi

missing=()
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
if [ "$AUTH" -eq 1 ] && ! command -v htpasswd >/dev/null 2>&1; then missing+=(apache2-utils); fi
command -v python3 >/dev/null 2>&1 || missing+=(python3)
if [ "${#missing[@]}" -gt 0 ]; then apt_install "${missing[@]}"; fi

mkdir -p "$STATE_DIR/data"
STATE_DIR=$(cd "$STATE_DIR" && pwd)
PIDFILE="$STATE_DIR/pid"
PORTFILE="$STATE_DIR/port"
exec 9>"$STATE_DIR/.lock"
flock -w 60 9 || die "timed out waiting for $STATE_DIR/.lock"

# Reuse a live registry whose auth matches what was asked for.
if pid=$(running_pid) && [ -s "$PORTFILE" ] && answers "$(cat "$PORTFILE")"; then
    same=0
    if [ "$AUTH" -eq 0 ]; then
        grep -q '^auth:' "$STATE_DIR/config.yml" || same=1
    elif grep -q '^auth:' "$STATE_DIR/config.yml" \
        && printf '%s' "$PASSWORD" | htpasswd -vi "$STATE_DIR/htpasswd" "$USER_NAME" >/dev/null 2>&1; then
        same=1
    fi
    if [ "$same" -eq 1 ]; then
        log "reusing registry pid $pid on 127.0.0.1:$(cat "$PORTFILE")"
        echo "REGISTRY=127.0.0.1:$(cat "$PORTFILE")"
        exit 0
    fi
    log "credentials changed; restarting"
    stop
fi
stop

umask 077
if [ "$AUTH" -eq 1 ]; then
    # Password via stdin, not argv: argv is visible to every user in `ps`.
    printf '%s' "$PASSWORD" | htpasswd -niB -C 5 "$USER_NAME" 2>/dev/null | sed '/^$/d' >"$STATE_DIR/htpasswd"
    awk -F: -v u="$USER_NAME" '$1 == u && $2 ~ /^\$2/ { ok = 1 } END { exit !ok }' "$STATE_DIR/htpasswd" || die "htpasswd did not produce a bcrypt entry"
    if [ "${GENERATED:-0}" -eq 1 ]; then
        printf '%s' "$USER_NAME" >"$STATE_DIR/username"
        printf '%s' "$PASSWORD" >"$STATE_DIR/password"
    fi
fi

start_t=$(date +%s.%N)
for attempt in 1 2 3 4 5; do
    port=$(free_port)
    secret=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
    {
        echo "version: 0.1"
        echo "log:"
        echo "  level: info"
        echo "  formatter: text"
        echo "  accesslog:"
        echo "    disabled: false"
        echo "storage:"
        echo "  filesystem:"
        echo "    rootdirectory: $STATE_DIR/data"
        echo "  delete:"
        echo "    enabled: true"
        echo "  maintenance:"
        echo "    uploadpurging:"
        echo "      enabled: false"
        echo "http:"
        echo "  addr: 127.0.0.1:$port"
        echo "  secret: $secret"
        if [ "$AUTH" -eq 1 ]; then
            echo "auth:"
            echo "  htpasswd:"
            echo "    realm: deployer-test-registry"
            echo "    path: $STATE_DIR/htpasswd"
        fi
    } >"$STATE_DIR/config.yml"
    # The access log (gorilla's combined format) goes to stdout, the app log to stderr.
    setsid nohup docker-registry serve "$STATE_DIR/config.yml" \
        >>"$STATE_DIR/registry.log" 2>>"$STATE_DIR/registry-app.log" </dev/null 9>&- &
    pid=$!
    echo "$pid" >"$PIDFILE"
    for _ in $(seq 1 100); do
        answers "$port" && break
        alive "$pid" || break
        sleep 0.1
    done
    if alive "$pid" && answers "$port"; then
        echo "$port" >"$PORTFILE"
        log "registry pid $pid on 127.0.0.1:$port (auth: $([ "$AUTH" -eq 1 ] && echo htpasswd || echo none)) in $(python3 -c "import sys; print(round($(date +%s.%N) - $start_t, 2))")s"
        echo "REGISTRY=127.0.0.1:$port"
        exit 0
    fi
    kill "$pid" 2>/dev/null || true
    rm -f "$PIDFILE"
    log "attempt $attempt on port $port failed; last app log lines:"
    tail -n 5 "$STATE_DIR/registry-app.log" >&2 || true
done
die "registry did not start (see $STATE_DIR/registry-app.log)"

#!/usr/bin/env bash
# Make sure a Docker Engine is reachable; print `export VAR=value` lines on stdout.
#
# Usage:  eval "$(bash docker/ensure-engine.sh)"
#
# Why this exists: the test machines (and CI) start with no running engine, and
# every process of an earlier session is gone, so each test run must bring its
# own engine up, idempotently and quickly. Order of preference:
#   1. whatever `docker info` already reaches with the current environment;
#   2. our own dockerd (data-root, socket, pidfile, exec-root all private to
#      deployer, so it never fights a system daemon), reused if already up;
#   3. as root on Debian: install docker.io when dockerd is missing, then 2.
# The data-root is persistent, so images built by an earlier run (e.g. the
# Debian-built Python base image) are reused by the next one.
#
# stdout carries ONLY export lines; all logging goes to stderr.
#
# Environment knobs (all optional):
#   DEPLOYER_ENGINE_DATA_ROOT  default /var/lib/deployer/docker
#   DEPLOYER_ENGINE_RUN_DIR    default /run/deployer  (socket, pidfile, exec-root)
#   DEPLOYER_ENGINE_LOG        default /var/log/deployer/dockerd.log
#   DEPLOYER_ENGINE_TIMEOUT    seconds to wait for the daemon, default 60
set -euo pipefail

DATA_ROOT=${DEPLOYER_ENGINE_DATA_ROOT:-/var/lib/deployer/docker}
RUN_DIR=${DEPLOYER_ENGINE_RUN_DIR:-/run/deployer}
LOG_FILE=${DEPLOYER_ENGINE_LOG:-/var/log/deployer/dockerd.log}
TIMEOUT=${DEPLOYER_ENGINE_TIMEOUT:-60}
SOCKET="$RUN_DIR/docker.sock"
PIDFILE="$RUN_DIR/docker.pid"
OUR_HOST="unix://$SOCKET"


LOG_PREFIX=ensure-engine
# shellcheck source=docker/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Pick a docker CLI for probing: the one on PATH, else Debian's.
find_cli() {
    if command -v docker >/dev/null 2>&1; then command -v docker
    elif [ -x /usr/bin/docker ]; then echo /usr/bin/docker
    else echo ""
    fi
}

# `docker info` against a given DOCKER_HOST ("" = the CLI's default), bounded in time.
engine_answers() {
    local host=$1 cli
    cli=$(find_cli)
    [ -n "$cli" ] || return 1
    if [ -n "$host" ]; then
        DOCKER_HOST=$host timeout 15 "$cli" info >/dev/null 2>&1
    else
        (unset DOCKER_HOST; timeout 15 "$cli" info >/dev/null 2>&1)
    fi
}

# A CLI whose `docker build` does BuildKit (--secret, RUN --mount) without buildx.
# The 28.x CLI on PATH here lacks buildx; Debian's 20.10 CLI has BuildKit built in.
buildkit_cli() {
    local cli
    for cli in "$(command -v docker 2>/dev/null || true)" /usr/bin/docker; do
        if [ -z "$cli" ] || [ ! -x "$cli" ]; then continue; fi
        if DOCKER_BUILDKIT=1 "$cli" build --help 2>/dev/null | grep -q -- '--secret'; then
            echo "$cli"
            return 0
        fi
    done
    return 1
}

emit() {
    local host=$1 bk
    printf 'export DOCKER_HOST=%q\n' "$host"
    if bk=$(buildkit_cli); then
        printf 'export DEPLOYER_DOCKER_CLI=%q\n' "$bk"
    fi
}

# A brand-new machine has no docker CLI to probe with: get docker.io first.
if [ -z "$(find_cli)" ]; then
    apt_install docker.io
fi

# 1. An engine the caller already reaches.
if [ -n "${DOCKER_HOST:-}" ] && engine_answers "$DOCKER_HOST"; then
    log "using existing engine at DOCKER_HOST=$DOCKER_HOST"
    emit "$DOCKER_HOST"
    exit 0
fi
if [ -z "${DOCKER_HOST:-}" ] && engine_answers ""; then
    log "using existing engine at unix:///var/run/docker.sock"
    emit unix:///var/run/docker.sock
    exit 0
fi

# 2./3. Our own dockerd. Serialise concurrent callers (parallel test sessions).
[ "$(id -u)" -eq 0 ] || die "no Docker engine reachable (docker info failed) and not root, so cannot start one. Start Docker, or set DOCKER_HOST, then re-run."
mkdir -p "$RUN_DIR" "$DATA_ROOT" "$(dirname "$LOG_FILE")"
exec 9>"$RUN_DIR/ensure-engine.lock"
flock -w $((TIMEOUT + 30)) 9 || die "timed out waiting for $RUN_DIR/ensure-engine.lock"

if engine_answers "$OUR_HOST"; then
    log "reusing deployer dockerd at $OUR_HOST (pid $(cat "$PIDFILE" 2>/dev/null || echo '?'))"
    emit "$OUR_HOST"
    exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
    apt_install docker.io
    # Where systemd runs, installing docker.io starts the system daemon: use it
    # rather than run a second daemon on the same bridge and iptables chains.
    if [ -z "${DOCKER_HOST:-}" ] && engine_answers ""; then
        log "using the system engine started by the docker.io package"
        emit unix:///var/run/docker.sock
        exit 0
    fi
fi
command -v dockerd >/dev/null 2>&1 || die "dockerd still missing after installing docker.io"

# A daemon of ours that is alive but not answering: give it the full timeout
# below rather than starting a second one on the same data-root.
pid=""
if [ -s "$PIDFILE" ]; then
    pid=$(cat "$PIDFILE")
    # /run may survive a reboot here: the pid may be gone, or reused by another program.
    if ! alive "$pid" || [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != dockerd ]; then
        log "removing stale pidfile $PIDFILE (pid $pid is not a running dockerd)"
        rm -f "$PIDFILE"
        pid=""
    fi
fi

start=$(date +%s)
if [ -z "$pid" ]; then
    rm -f "$SOCKET"
    log "starting dockerd (data-root $DATA_ROOT, socket $SOCKET, log $LOG_FILE)"
    # setsid + nohup: the daemon must outlive this script and the caller's
    # process group (pytest, CI step), and must not get the terminal's SIGHUP.
    # 9>&-: the daemon must not inherit (and so hold forever) our lock.
    setsid nohup dockerd \
        --data-root "$DATA_ROOT" \
        --exec-root "$RUN_DIR/exec" \
        --host "$OUR_HOST" \
        --pidfile "$PIDFILE" \
        >>"$LOG_FILE" 2>&1 </dev/null 9>&- &
    pid=$!
fi

deadline=$((start + TIMEOUT))
until engine_answers "$OUR_HOST"; do
    if ! alive "$pid"; then
        log "dockerd exited during startup; last lines of $LOG_FILE:"
        tail -n 20 "$LOG_FILE" >&2 || true
        die "dockerd failed to start (see $LOG_FILE)"
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
        tail -n 20 "$LOG_FILE" >&2 || true
        die "dockerd (pid $pid) did not answer on $OUR_HOST within ${TIMEOUT}s (see $LOG_FILE)"
    fi
    sleep 0.3
done
log "dockerd up at $OUR_HOST (pid $pid) in $(( $(date +%s) - start ))s"
emit "$OUR_HOST"

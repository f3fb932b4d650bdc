# Shared helpers for docker/*.sh and scripts/*.sh (sourced, not run).
# Set LOG_PREFIX before sourcing to name the script in its messages.
# shellcheck shell=bash

log() { printf '%s: %s\n' "${LOG_PREFIX:-${0##*/}}" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

APT_UPDATED=0
# Install Debian packages (as root); `apt-get update` at most once per run.
apt_install() {
    [ "$(id -u)" -eq 0 ] || die "need root to apt-get install $*; install them by hand or run as root"
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install $* with your package manager"
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        APT_UPDATED=1
    fi
    log "apt-get install -y $*"
    # dpkg's per-package chatter is not silenced by -qq: keep it in a log, show it on failure
    local out
    out=$(mktemp)
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >"$out" 2>&1; then
        tail -n 30 "$out" >&2
        rm -f "$out"
        die "apt-get install $* failed (output above)"
    fi
    rm -f "$out"
}

# Is PID a live process? `kill -0` alone also succeeds for a zombie (a process that exited
# but was not reaped, e.g. in a container whose PID 1 does not reap): read its state too.
alive() {
    local state
    kill -0 "$1" 2>/dev/null || return 1
    state=$(sed -E 's/^.*\) (.).*$/\1/' "/proc/$1/stat" 2>/dev/null) || return 0
    [ "$state" != Z ] && [ "$state" != X ]
}

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
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

# Shared set-up for scripts/test.sh and scripts/quickstart.sh (sourced, not run).
# Expects the caller to have cd'ed to the repository root and set EXTRAS (pip extras to
# install, e.g. "test") and IMPORTS (modules that prove the install, e.g. "deployer pytest").
# Steps:
#   1. python3 with venv support (apt-get install python3-venv when missing)
#   2. a venv at .venv, created once, reused afterwards
#   3. pip upgraded in it (the pip 23.2 of `python3 -m venv` can fail to resolve the big
#      extras with InconsistentCandidate), then pip install -e ".[$EXTRAS]", skipped while
#      pyproject.toml is unchanged (one stamp per set of extras)
#   4. a Docker engine via docker/ensure-engine.sh (its exports are eval'd)
# shellcheck shell=bash
ROOT=$(pwd)
VENV="$ROOT/.venv"
STAMP="$VENV/.deployer-install-stamp-${EXTRAS//[^a-z,]/_}"

# Microseconds since the epoch, from bash itself (5.0+): no bc/python needed.
now() { echo "${EPOCHREALTIME/[.,]/}"; }
TIMINGS=()
T0=$(now)
phase_start=$T0
phase_done() {
    local t d
    t=$(now)
    d=$(( (t - phase_start) / 100000 ))
    TIMINGS+=("$(printf '%-8s %4d.%ds' "$1" $((d / 10)) $((d % 10)))")
    phase_start=$t
}
summary() {
    local line d
    d=$(( ($(now) - T0) / 100000 ))
    log "timing (total $((d / 10)).$((d % 10))s):"
    for line in "${TIMINGS[@]}"; do printf '  %s\n' "$line" >&2; done
}

LOG_PREFIX="${0##*/}"
# shellcheck source=docker/lib.sh
source "docker/lib.sh"

# 1. python3 + venv
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    if [ ! -x "$VENV/bin/python" ]; then
        apt_install python3 python3-venv
    fi
fi

# 2. the venv (recreated if broken, e.g. its interpreter vanished)
if ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    log "creating venv at $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
fi
phase_done venv

# 3. the project and its test extras; the stamp holds what they were installed from
want=$( { cat pyproject.toml; echo "$EXTRAS"; "$VENV/bin/python" -VV; } | sha256sum | cut -d' ' -f1)
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$want" ] \
    || ! "$VENV/bin/python" -c "import ${IMPORTS// /, }" >/dev/null 2>&1; then
    log "pip install --upgrade pip; pip install -e '.[${EXTRAS}]'"
    "$VENV/bin/python" -m pip install -q --upgrade pip >&2
    "$VENV/bin/python" -m pip install -q -e ".[${EXTRAS}]" >&2
    echo "$want" >"$STAMP"
else
    log "venv up to date with pyproject.toml; skipping pip install"
fi
phase_done install

# 4. the Docker engine
exports=$(bash docker/ensure-engine.sh) || die "could not get a Docker engine (see the messages above)"
eval "$exports"
phase_done engine


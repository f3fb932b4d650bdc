#!/usr/bin/env bash
# The test command: ./scripts/test.sh [pytest args...]
#
# On a fresh Debian machine (as root) this installs what the tests need and runs
# them; on a machine where everything is already there it costs a second or two
# before pytest starts. scripts/setup-env.sh does the venv, install and engine steps;
# then pytest "$@" runs; its exit code is passed through, except "no tests collected"
# (5), which is a failure here: a test command that ran nothing proved nothing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
EXTRAS="test"
IMPORTS="deployer pytest mlflow moto"
# shellcheck source=scripts/setup-env.sh
source scripts/setup-env.sh

# 5. host tools the tests call: ps (the engine's `docker top` runs it), shellcheck (the
#    generated shell scripts are checked with it). A minimal Debian has neither.
missing=()
command -v ps >/dev/null 2>&1 || missing+=(procps)
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
if [ "${#missing[@]}" -gt 0 ]; then
    apt_install "${missing[@]}"
fi
phase_done tools

# 6. the tests
set +e
"$VENV/bin/python" -m pytest "$@"
rc=$?
set -e
phase_done pytest
summary
if [ "$rc" -eq 5 ]; then
    log "ERROR: pytest collected no tests (exit 5); treating that as a failure"
    exit 1
fi
exit "$rc"

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

# 6. the flavors venv: TensorFlow, PyTorch, XGBoost, LightGBM... that save and score the flavor
#    corpus (tests/building/test_flavor_corpus.py), kept apart from the main venv (see
#    tests/fixtures/flavor-requirements.txt for why); created once, reused while unchanged
FLAVORS="$ROOT/.venv-flavors"
if ! "$FLAVORS/bin/python" -c 'import sys' >/dev/null 2>&1; then
    log "creating the flavors venv at $FLAVORS"
    rm -rf "$FLAVORS"
    python3 -m venv "$FLAVORS"
fi
want=$( { cat pyproject.toml tests/fixtures/flavor-requirements.txt; "$FLAVORS/bin/python" -VV; } \
    | sha256sum | cut -d' ' -f1)
if [ "$(cat "$FLAVORS/.deployer-install-stamp" 2>/dev/null || true)" != "$want" ] \
    || ! "$FLAVORS/bin/python" -c 'import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None
for m in ("deployer", "mlflow", "tensorflow", "torch", "xgboost", "lightgbm")))' >/dev/null 2>&1; then
    log "pip install -e '.[serve]' -r tests/fixtures/flavor-requirements.txt (flavors venv)"
    "$FLAVORS/bin/python" -m pip install -q --upgrade pip >&2
    "$FLAVORS/bin/python" -m pip install -q -e ".[serve]" -r tests/fixtures/flavor-requirements.txt >&2
    echo "$want" >"$FLAVORS/.deployer-install-stamp"
fi
export DEPLOYER_FLAVORS_PYTHON="$FLAVORS/bin/python"
phase_done flavors

# 7. the test engine's disk: images and build cache earlier runs left in deployer's own engine
#    (its data root persists) are removed, or runs on one machine fill the disk; never done to
#    an engine that was already running for the user (see docker/reclaim-disk.py)
case "${DOCKER_HOST:-}" in
    unix:///run/deployer/*) "$VENV/bin/python" docker/reclaim-disk.py || log "reclaim-disk failed; going on" ;;
esac
phase_done reclaim

# 8. the tests
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

#!/usr/bin/env bash
# The README's main job, end to end on a fresh Debian machine (as root):
#   set up the venv and a Docker engine, make sure a Python base image exists, save an
#   example iris model with MLflow, `deployer run-local` it (build + run + wait for
#   readiness), send one prediction with `deployer predict`, and print how to stop it.
# Installs only what this job needs: deployer and the `example` extra (MLflow-skinny,
# scikit-learn, skops: what saves the example model), not the test stack. Needs nothing a
# minimal Debian lacks (no curl, jq or compiler): the prediction is sent by deployer itself.
# Usage: ./scripts/quickstart.sh [PORT]      (default: any free port)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
EXTRAS="example"
IMPORTS="deployer mlflow sklearn skops"
# shellcheck source=scripts/setup-env.sh
source scripts/setup-env.sh
export PATH="$VENV/bin:$PATH"

# A base image: python:3.11-slim when the engine has it or can pull it; otherwise one built
# from Debian packages (air-gapped sites and this kind of machine cannot pull).
if docker image inspect python:3.11-slim >/dev/null 2>&1 || docker pull -q python:3.11-slim >/dev/null 2>&1; then
    BASE=python:3.11-slim
else
    BASE=$(bash docker/base-image.sh)
fi
phase_done base

MODEL=examples/iris-model
python examples/make_example_model.py "$MODEL" >/dev/null
deployer inspect -m "$MODEL"
phase_done model

result=$(deployer run-local -m "$MODEL" --base-image "$BASE" --detach -p "${1:-0}" --output json)
url=$(printf '%s' "$result" | python -c 'import json,sys; print(json.load(sys.stdin)["url"])')
name=$(printf '%s' "$result" | python -c 'import json,sys; print(json.load(sys.stdin)["name"])')
phase_done run-local

echo "POST $url/invocations  (deployer predict --target local --name $name)"
deployer predict --target local --name "$name" -i "$MODEL/serving_input_example.json"
phase_done predict
summary
cat <<MSG
The model is served at $url  (routes: /invocations /ping /openapi.json /metrics /v2/...)
Stop it with:  DOCKER_HOST=$DOCKER_HOST .venv/bin/deployer delete --target local --name $name
MSG

#!/bin/sh
# Regenerate grpc_predict_v2_pb2.py / grpc_predict_v2_pb2_grpc.py from grpc_predict_v2.proto.
# Run from anywhere with a Python that has grpcio-tools (keep it out of the serving venv), e.g.
#   uv venv /tmp/grpctools && uv pip install --python /tmp/grpctools/bin/python 'grpcio-tools==1.85.*'
#   PYTHON=/tmp/grpctools/bin/python deployer/serving/grpc/regenerate.sh
# The generated code needs a protobuf runtime at least as new as the protoc that grpcio-tools
# bundles, within the same major version (the generated _pb2 checks it at import); README
# "V2 over gRPC" gives the range.
set -eu
root=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$root"
"${PYTHON:-python}" -m grpc_tools.protoc -I . --python_out=. --grpc_python_out=. \
  deployer/serving/grpc/grpc_predict_v2.proto

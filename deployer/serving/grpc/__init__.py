"""The Open Inference Protocol (V2) over gRPC: ``inference.GRPCInferenceService``.

``grpc_predict_v2.proto`` is the service definition; ``grpc_predict_v2_pb2*.py`` are generated
from it by ``regenerate.sh`` (do not edit them); :mod:`deployer.serving.grpc.service` serves it
through the REST V2 adapter (:mod:`deployer.serving.v2`).
"""

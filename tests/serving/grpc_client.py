"""Drives deployer's V2 gRPC port with tritonclient (run by tests/serving/test_grpc.py in its
own venv, never imported by the suite): reads a JSON spec on stdin, prints JSON answers.

Every call goes through tritonclient: ``InferenceServerClient`` for the six RPCs (its
``InferInput`` sends ``raw_input_contents``), and its generated ``service_pb2`` stubs for a
request with typed ``contents``, which the client class never sends.
"""

import json
import sys

import grpc
import numpy as np
import tritonclient.grpc as tg
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

_CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT32": "int_contents", "INT64": "int64_contents",
             "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents"}


def _outputs(response: dict, arrays: dict) -> list:
    out = []
    for tensor in response.get("outputs", []):
        data = arrays[tensor["name"]].ravel().tolist()
        if tensor["datatype"] == "BYTES":
            data = [x.decode() for x in data]
        out.append({"name": tensor["name"], "datatype": tensor["datatype"],
                    "shape": [int(d) for d in tensor["shape"]], "data": data})
    return out


def infer_client(client, request: dict) -> dict:
    inputs = []
    for t in request["inputs"]:
        tensor = tg.InferInput(t["name"], t["shape"], t["datatype"])
        dtype = np.object_ if t["datatype"] == "BYTES" else triton_to_np_dtype(t["datatype"])
        data = [x.encode() for x in t["data"]] if t["datatype"] == "BYTES" else t["data"]
        tensor.set_data_from_numpy(np.array(data, dtype=dtype).reshape(t["shape"]))
        inputs.append(tensor)
    try:
        result = client.infer(request["model"], inputs, model_version=request.get("version", ""),
                              request_id=request.get("id", ""),
                              parameters=request.get("parameters"))
    except InferenceServerException as exc:
        return {"code": exc.status(), "message": exc.message()}
    response = result.get_response(as_json=True)
    arrays = {o["name"]: result.as_numpy(o["name"]) for o in response["outputs"]}
    return {"code": "OK", "id": response.get("id", ""), "model_name": response["model_name"],
            "outputs": _outputs(response, arrays)}


def infer_typed(channel, request: dict) -> dict:
    message = service_pb2.ModelInferRequest(model_name=request["model"])
    for t in request["inputs"]:
        tensor = message.inputs.add(name=t["name"], datatype=t["datatype"], shape=t["shape"])
        data = [x.encode() for x in t["data"]] if t["datatype"] == "BYTES" else t["data"]
        getattr(tensor.contents, _CONTENTS[t["datatype"]]).extend(data)
    try:
        response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(message)
    except grpc.RpcError as exc:
        return {"code": f"StatusCode.{exc.code().name}", "message": exc.details()}
    arrays = {}
    for tensor, raw in zip(response.outputs, response.raw_output_contents, strict=True):
        if tensor.datatype == "BYTES":
            items, offset = [], 0
            while offset < len(raw):
                size = int.from_bytes(raw[offset:offset + 4], "little")
                items.append(raw[offset + 4:offset + 4 + size])
                offset += 4 + size
            arrays[tensor.name] = np.array(items, dtype=object)
        else:
            arrays[tensor.name] = np.frombuffer(raw, dtype=triton_to_np_dtype(tensor.datatype))
    outputs = [{"name": o.name, "datatype": o.datatype, "shape": list(o.shape)}
               for o in response.outputs]
    return {"code": "OK", "id": response.id, "model_name": response.model_name,
            "outputs": _outputs({"outputs": outputs}, arrays)}


def main() -> None:
    spec = json.load(sys.stdin)
    client = tg.InferenceServerClient(spec["url"])
    channel = grpc.insecure_channel(spec["url"])
    model = spec["model"]
    answers: dict = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready(model),
        "server_metadata": client.get_server_metadata(as_json=True),
        "model_metadata": client.get_model_metadata(model, as_json=True),
    }
    try:
        client.is_model_ready("no-such-model")
        answers["unknown_model_ready"] = "OK"
    except InferenceServerException as exc:
        answers["unknown_model_ready"] = exc.status()
    answers["infer"] = [infer_client(client, r) for r in spec.get("raw", [])]
    answers["typed"] = [infer_typed(channel, r) for r in spec.get("typed", [])]
    print(json.dumps(answers))


if __name__ == "__main__":
    main()

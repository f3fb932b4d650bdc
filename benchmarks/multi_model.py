"""Benchmark: many models in one deployer server against one server per model; REST against gRPC.

Run with one command (about three minutes)::

    .venv/bin/python benchmarks/multi_model.py            # tables
    .venv/bin/python benchmarks/multi_model.py --json     # one JSON document on stdout

Part 1 - **20 small models, one endpoint.** Saves 20 scikit-learn classifiers with real MLflow
(iris, different regularisation, so every model answers differently), then measures, one setup
at a time (never side by side: they would fight over the cores):

* ``deployer serve -m m00=DIR ... -m m19=DIR``: one server, the CPU count of workers;
* 20 ``deployer serve -m DIR`` processes, one per model (each with its default workers): what a
  team does today without multi-model serving;
* 20 ``mlflow models serve`` processes (``--env-manager local``, MLflow's default of 1 worker):
  MLflow's only answer (it serves one model per server), unless ``--no-mlflow``.

For each: seconds until every model answers, memory (the sum of PSS over every process tree:
forked workers share pages that RSS would count once per process) and 1-row throughput across
the models: ``--connections`` keep-alive clients, each sending one ``dataframe_split`` row to
the next model in turn on ``/invocations`` (the one-server setup picks the model with the
``X-Deployer-Target-Model`` header; the others with the port). Every model's answer is checked
against what its own single-model server answers, so a fast wrong answer cannot pass.

Part 2 - **REST against gRPC** (the Open Inference Protocol both ways) on one deployer server
started with ``--grpc-port``: the median latency of sequential requests of 1 row and of
``--rows`` rows, ``POST /v2/models/{name}/infer`` (JSON) against ``ModelInfer`` (protobuf,
``raw_input_contents`` as Triton's clients send). The gRPC client is deployer's generated stubs
of the protocol's ``grpc_predict_v2.proto`` (the test suite checks the wire against
tritonclient); both answers are compared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serving import (  # noqa: E402 - the sibling benchmark's process helpers
    COLUMNS,
    HOST,
    Server,
    free_port,
    read_response,
    request,
    tree_memory_mb,
)

ROW = [5.9, 3.0, 4.2, 1.5]
HEADER = "X-Deployer-Target-Model"


# --------------------------------------------------------------------------- models
def save_models(dest: Path, count: int) -> dict[str, Path]:
    """``count`` iris classifiers that answer differently (regularisation and class weights)."""
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    data = load_iris(as_frame=True)
    X = data.data.set_axis(COLUMNS, axis=1)
    models = {}
    for i in range(count):
        clf = LogisticRegression(C=0.01 * (i + 1) ** 2, max_iter=500).fit(X, data.target)
        path = dest / f"m{i:02d}"
        mlflow.sklearn.save_model(
            clf, str(path), signature=infer_signature(X, clf.predict_proba(X)),
            pyfunc_predict_fn="predict_proba",
        )
        models[path.name] = path
    return models


def row_body(rows: int = 1) -> bytes:
    return json.dumps({"dataframe_split": {"columns": COLUMNS, "data": [ROW] * rows}}).encode()


# --------------------------------------------------------------------------- servers
def deployer_argv(port: int, *model_args: str, grpc_port: int | None = None) -> list[str]:
    argv = [str(Path(sys.executable).with_name("deployer")), "serve", "--host", HOST, "--port", str(port)]
    for arg in model_args:
        argv += ["-m", arg]
    if grpc_port is not None:
        argv += ["--grpc-port", str(grpc_port)]
    return argv


_QUIET = {"DEPLOYER_SERVE_ACCESS_LOG": "0"}


def start_all(servers: list[Server], logdir: Path, timeout: float = 600.0) -> float:
    """Start every server at once; seconds until the last one answers its health route."""
    t0 = time.perf_counter()
    env = {**os.environ}
    for s in servers:
        s.log = open(logdir / f"{s.name}.log", "wb")  # noqa: SIM115 - closed by Server.stop
        s.proc = subprocess.Popen(s.argv, stdout=s.log, stderr=subprocess.STDOUT,
                                  env={**env, **s.env}, start_new_session=True)
    deadline = time.monotonic() + timeout
    waiting = list(servers)
    while waiting and time.monotonic() < deadline:
        for s in list(waiting):
            assert s.proc is not None
            if s.proc.poll() is not None:
                raise RuntimeError(f"{s.name} exited with {s.proc.returncode}; log in {logdir}")
            try:
                if request(s.port, "GET", s.health, None, timeout=2)[0] == 200:
                    waiting.remove(s)
            except OSError:
                pass
        time.sleep(0.2)
    if waiting:
        raise RuntimeError(f"{[s.name for s in waiting]} not ready within {timeout:.0f}s")
    return time.perf_counter() - t0


def stop_all(servers: list[Server]) -> None:
    for s in servers:
        s.stop()


# --------------------------------------------------------------------------- load
@dataclass(frozen=True)
class Target:
    """Where one model is asked: a port and the extra header lines (the model pick)."""

    model: str
    port: int
    header: str = ""


def _head(target: Target, body: bytes) -> bytes:
    return (f"POST /invocations HTTP/1.1\r\nHost: {HOST}:{target.port}\r\n"
            f"Content-Type: application/json\r\n{target.header}"
            f"Content-Length: {len(body)}\r\n\r\n").encode()


async def _loadgen(targets: list[Target], connections: int, duration: float) -> dict[str, Any]:
    body = row_body()
    heads = [_head(t, body) for t in targets]
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + duration

    async def client(offset: int) -> None:
        nonlocal errors
        streams: dict[int, Any] = {}
        i = offset
        try:
            while time.perf_counter() < stop_at:
                target = targets[i % len(targets)]
                if target.port not in streams:
                    streams[target.port] = await asyncio.open_connection(HOST, target.port)
                reader, writer = streams[target.port]
                t0 = time.perf_counter()
                writer.write(heads[i % len(targets)] + body)
                status, _ = await read_response(reader)
                latencies.append((time.perf_counter() - t0) * 1e3)
                if not status.split()[1].startswith(b"2"):
                    errors += 1
                i += 1
        finally:
            for _, writer in streams.values():
                writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client(c * 7) for c in range(connections)))
    elapsed = time.perf_counter() - t0
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]  # noqa: E731
    return {"rps": len(latencies) / elapsed, "p50_ms": pick(0.5), "p99_ms": pick(0.99),
            "requests": len(latencies), "errors": errors}


def run_loadgen(targets: list[Target], connections: int, duration: float) -> dict[str, Any]:
    """The load generator in its own process (its CPU is not charged to this driver)."""
    spec = json.dumps({"targets": [asdict(t) for t in targets], "connections": connections,
                       "duration": duration})
    out = subprocess.run([sys.executable, __file__, "--_loadgen"], input=spec, text=True,
                         capture_output=True, check=True, timeout=duration + 60)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def answers(targets: list[Target]) -> dict[str, Any]:
    out = {}
    for t in targets:
        headers = {"Content-Type": "application/json"}
        if t.header:
            name, value = t.header.strip().split(": ", 1)
            headers[name] = value
        import http.client

        conn = http.client.HTTPConnection(HOST, t.port, timeout=30)
        try:
            conn.request("POST", "/invocations", body=row_body(), headers=headers)
            resp = conn.getresponse()
            out[t.model] = (resp.status, json.loads(resp.read()))
        finally:
            conn.close()
    return out


# --------------------------------------------------------------------------- part 1
@dataclass
class Setup:
    name: str
    processes: int
    start_s: float
    pss_mb: float
    rss_mb: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def measure(name: str, servers: list[Server], targets: list[Target], logdir: Path,
            args: argparse.Namespace, expected: dict[str, Any] | None) -> tuple[Setup, dict]:
    try:
        start = start_all(servers, logdir)
        got = answers(targets)
        bad = {m: a for m, a in got.items() if a[0] != 200}
        if bad:
            raise RuntimeError(f"{name}: models answered errors: {bad}")
        if expected is not None:
            wrong = sorted(m for m in expected if got[m][1] != expected[m][1])
            if wrong:
                raise RuntimeError(f"{name}: {wrong} answer differently from their own servers")
        time.sleep(args.settle)
        rss = pss = 0.0
        nproc = 0
        for s in servers:
            assert s.proc is not None
            r, p, n = tree_memory_mb(s.proc.pid)
            rss, pss, nproc = rss + r, pss + p, nproc + n
        run_loadgen(targets, args.connections, 1)  # warm-up
        load = run_loadgen(targets, args.connections, args.duration)
    finally:
        stop_all(servers)
    return Setup(name, nproc, round(start, 1), round(pss, 1), round(rss, 1),
                 round(load["rps"], 1), round(load["p50_ms"], 2), round(load["p99_ms"], 2),
                 load["errors"]), got


def part1(models: dict[str, Path], logdir: Path, args: argparse.Namespace) -> list[Setup]:
    results = []
    singles = []
    for name, path in models.items():
        port = free_port()
        singles.append(Server(f"single-{name}", deployer_argv(port, str(path)), port, 0,
                              env=_QUIET))
    single_targets = [Target(n, s.port) for n, s in zip(models, singles, strict=True)]
    setup, expected = measure(f"{len(models)} deployer servers", singles, single_targets, logdir,
                              args, None)
    results.append(setup)

    port = free_port()
    multi = Server("multi", deployer_argv(port, *(f"{n}={p}" for n, p in models.items())), port,
                   0, env=_QUIET)
    multi_targets = [Target(n, port, f"{HEADER}: {n}\r\n") for n in models]
    setup, _ = measure("1 deployer server", [multi], multi_targets, logdir, args, expected)
    results.insert(0, setup)

    if not args.no_mlflow:
        mlflow_cli = str(Path(sys.executable).with_name("mlflow"))
        path_env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        servers = []
        for name, path in models.items():
            p = free_port()
            servers.append(Server(f"mlflow-{name}", [mlflow_cli, "models", "serve", "-m",
                                  str(path), "--env-manager", "local", "--host", HOST,
                                  "--port", str(p)], p, 1, env=path_env))
        targets = [Target(n, s.port) for n, s in zip(models, servers, strict=True)]
        setup, _ = measure(f"{len(models)} mlflow servers", servers, targets, logdir, args,
                           expected)
        results.append(setup)
    return results


# --------------------------------------------------------------------------- part 2
def _v2_body(rows: int) -> bytes:
    return json.dumps({"inputs": [
        {"name": c, "shape": [rows], "datatype": "FP64", "data": [ROW[i]] * rows}
        for i, c in enumerate(COLUMNS)]}).encode()


def _median_ms(call: Any, runs: int) -> float:
    call()  # warm
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def part2(model: Path, logdir: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    import http.client

    import grpc
    import numpy as np

    from deployer.serving.grpc import grpc_predict_v2_pb2 as pb
    from deployer.serving.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

    port, gport = free_port(), free_port()
    server = Server("rest-grpc", deployer_argv(port, f"iris={model}", grpc_port=gport), port, 0,
                    env=_QUIET)
    rows_out = []
    try:
        start_all([server], logdir)
        channel = grpc.insecure_channel(f"{HOST}:{gport}")
        grpc.channel_ready_future(channel).result(timeout=60)
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        conn = http.client.HTTPConnection(HOST, port, timeout=60)
        for rows, runs in ((1, args.small_runs), (args.rows, args.big_runs)):
            body = _v2_body(rows)
            req = pb.ModelInferRequest(model_name="iris")
            for i, c in enumerate(COLUMNS):
                t = req.inputs.add(name=c, datatype="FP64", shape=[rows])
                del t  # raw contents below, as tritonclient sends them
                req.raw_input_contents.append(np.full(rows, ROW[i], "<f8").tobytes())

            def rest(body: bytes = body) -> Any:
                conn.request("POST", "/v2/models/iris/infer", body=body,
                             headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
                assert resp.status == 200, data
                return json.loads(data)["outputs"][0]["data"]

            def rpc(req: Any = req) -> Any:
                answer = stub.ModelInfer(req, timeout=60)
                return np.frombuffer(answer.raw_output_contents[0], "<f8").tolist()

            if not np.allclose(rest(), rpc()):
                raise RuntimeError(f"REST and gRPC answers differ for {rows} rows")
            rest_ms, grpc_ms = _median_ms(rest, runs), _median_ms(rpc, runs)
            rows_out.append({"rows": rows, "rest_ms": round(rest_ms, 3),
                             "grpc_ms": round(grpc_ms, 3),
                             "rest_over_grpc": round(rest_ms / grpc_ms, 2)})
        conn.close()
        channel.close()
    finally:
        server.stop()
    return rows_out


# --------------------------------------------------------------------------- report
def render(setups: list[Setup], rpc: list[dict[str, Any]], count: int) -> str:
    one = setups[0]
    lines = [f"{count} models, 1-row requests across the models on /invocations",
             "| setup | processes | ready in (s) | PSS (MiB) | RSS (MiB) | req/s | p50 (ms) | "
             "p99 (ms) | PSS vs 1 server | req/s vs 1 server |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for s in setups:
        lines.append(f"| {s.name} | {s.processes} | {s.start_s} | {s.pss_mb:,.0f} | "
                     f"{s.rss_mb:,.0f} | {s.rps:,.0f} | {s.p50_ms} | {s.p99_ms} | "
                     f"{s.pss_mb / one.pss_mb:.1f}x | {s.rps / one.rps:.2f}x |")
    lines += ["", "REST against gRPC (Open Inference Protocol), median of sequential requests",
              "| rows | REST V2 (ms) | gRPC (ms) | REST / gRPC |", "|---|---|---|---|"]
    for r in rpc:
        lines.append(f"| {r['rows']:,} | {r['rest_ms']} | {r['grpc_ms']} | {r['rest_over_grpc']}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per setup")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--settle", type=float, default=2.0, help="idle seconds before memory")
    parser.add_argument("--rows", type=int, default=10_000, help="rows of the big gRPC/REST call")
    parser.add_argument("--small-runs", type=int, default=300)
    parser.add_argument("--big-runs", type=int, default=15)
    parser.add_argument("--no-mlflow", action="store_true", help="skip the 20 MLflow servers")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-mm-") as tmp:
        root = Path(tmp)
        (root / "logs").mkdir()
        models = save_models(root, args.models)
        setups = part1(models, root / "logs", args)
        rpc = part2(models["m00"], root / "logs", args)
    if args.json:
        print(json.dumps({"setups": [asdict(s) for s in setups], "rest_vs_grpc": rpc,
                          "cpus": os.cpu_count(), "settings": vars(args)}, indent=2))
    else:
        print(render(setups, rpc, args.models))
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--_loadgen"]:
        spec = json.loads(sys.stdin.read())
        result = asyncio.run(_loadgen([Target(**t) for t in spec["targets"]],
                                      spec["connections"], spec["duration"]))
        print(json.dumps(result))
        sys.exit(0)
    sys.exit(main())

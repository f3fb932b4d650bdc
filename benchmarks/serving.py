"""Benchmark: deployer's scoring server against ``mlflow models serve`` on the same model.

Run with one command (about a minute)::

    .venv/bin/python benchmarks/serving.py            # table
    .venv/bin/python benchmarks/serving.py --json     # one JSON document on stdout

What it does, and why each choice:

* Saves an sklearn iris classifier with real MLflow into a temporary directory, so both
  servers load the very same files (skops format, signature, input example).
* Starts each server on a free port on 127.0.0.1, from this same venv, **one at a time**:
  running them side by side would make them fight over the 2 cores and measure the machine,
  not the servers. Two comparisons in one run:
  - **as shipped** (the issue's targets are judged here): both commands with their default
    worker counts, ``deployer serve`` (CPU count) and ``mlflow models serve --env-manager
    local`` (1 worker: ``workers or 1`` in mlflow/pyfunc/backend.py);
  - **equal workers**: MLflow with deployer's worker count too (``--workers N``, what
    MLflow's own Docker image does), printed alongside for transparency.
* Drives both with the same load generator: ``wrk`` (Debian's package) with a Lua script that
  POSTs one fixed body; if wrk is missing, a small asyncio HTTP/1.1 client in a separate
  process. 1-row requests, 8 keep-alive connections, a bounded duration.
* One 10,000-row ``dataframe_split`` request: the median of several runs on a warm server.
* Idle RSS: the sum of VmRSS over the server's whole process tree (launcher, supervisor,
  workers) read from /proc after start-up and one 1-row request; PSS is reported too
  because forked workers share pages (the model, imported modules) that RSS counts once per
  process.
* The **loader floor**: one bare process that only runs ``import mlflow.pyfunc;
  mlflow.pyfunc.load_model(model)`` (what the issue requires every server to use), its RSS
  and its time. No server built on MLflow's loader can start faster or hold less than that,
  so the table shows how far each target is from what is physically possible.
* Checks that both servers return identical predictions, so a fast wrong answer cannot pass.
* deployer's access log is off (``DEPLOYER_SERVE_ACCESS_LOG=0``; MLflow's server writes
  none) unless ``--access-log`` measures it on.

Targets (from issue 3): throughput >= 20x MLflow's, deployer p99 <= 5 ms at c=8, the 10k-row
request in <= 1/3 of MLflow's time, idle memory <= 0.4x MLflow's.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
ONE_ROW = [5.1, 3.5, 1.4, 0.2]


# --------------------------------------------------------------------------- model + bodies
def save_iris_model(dest: Path) -> Path:
    """Train and save the iris model with MLflow's own sklearn flavor."""
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    data = load_iris(as_frame=True)
    X = data.data.set_axis(COLUMNS, axis=1)
    clf = LogisticRegression(max_iter=500).fit(X, data.target)
    path = dest / "iris"
    mlflow.sklearn.save_model(
        clf, str(path), signature=infer_signature(X, clf.predict(X)), input_example=X.head(3)
    )
    return path


def one_row_body() -> bytes:
    return json.dumps({"dataframe_split": {"columns": COLUMNS, "data": [ONE_ROW]}}).encode()


def _rows(rows: int) -> list[list[float]]:
    import random

    rnd = random.Random(42)
    return [[round(rnd.uniform(4.0, 8.0), 2), round(rnd.uniform(2.0, 4.5), 2),
             round(rnd.uniform(1.0, 7.0), 2), round(rnd.uniform(0.1, 2.5), 2)] for _ in range(rows)]


def many_rows_body(rows: int) -> bytes:
    return json.dumps({"dataframe_split": {"columns": COLUMNS, "data": _rows(rows)}}).encode()


def v2_body(data: list[list[float]]) -> bytes:
    """Open Inference Protocol request: one FP64 tensor per column (how MLServer's and
    KServe's clients send a column-based MLflow model its rows)."""
    return json.dumps({"inputs": [
        {"name": col, "shape": [len(data)], "datatype": "FP64", "data": [row[i] for row in data]}
        for i, col in enumerate(COLUMNS)]}).encode()


@dataclass(frozen=True)
class Route:
    """One scoring route as measured: its path, its 1-row and big bodies, and how to read the
    predictions out of an answer (to check every server answers the same)."""

    name: str
    path: str
    one: Path
    big: Path

    def predictions(self, answer: bytes) -> Any:
        data = json.loads(answer)
        if "outputs" in data:
            return data["outputs"][0]["data"]
        return data["predictions"]


# --------------------------------------------------------------------------- processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def descendants(root: int) -> list[int]:
    """``root`` and every process below it, from /proc (ppid links)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # the command name may contain spaces/parentheses: ppid follows the last ')'
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _kb_field(path: str, name: str) -> int:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_memory_mb(root: int) -> tuple[float, float, int]:
    """(sum of RSS, sum of PSS, process count) over the tree, in MiB."""
    pids = descendants(root)
    rss = sum(_kb_field(f"/proc/{p}/status", "VmRSS") for p in pids)
    pss = sum(_kb_field(f"/proc/{p}/smaps_rollup", "Pss") for p in pids)
    return rss / 1024, pss / 1024, len(pids)


@dataclass
class Server:
    name: str
    argv: list[str]
    port: int
    workers: int
    env: dict[str, str] = field(default_factory=dict)
    health: str = "/ping"
    proc: subprocess.Popen[bytes] | None = None
    log: Any = None

    def start(self, logdir: Path, timeout: float = 120.0) -> float:
        """Start the server; return seconds until its health route answered 200."""
        self.log = open(logdir / f"{self.name}.log", "wb")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, **self.env}
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            self.argv, stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}; log: {logdir / (self.name + '.log')}"
                )
            try:
                status, _ = request(self.port, "GET", self.health, None, timeout=2)
                if status == 200:
                    return time.perf_counter() - t0
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer {self.health} within {timeout:.0f}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # the server runs in its own session: signal only that process group
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.log is not None:
            self.log.close()


def request(port: int, method: str, path: str, body: bytes | None,
            timeout: float = 60.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


# --------------------------------------------------------------------------- load generators
WRK_SCRIPT = """\
-- generated by benchmarks/serving.py: POST one fixed JSON body on every request
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open(os.getenv("BENCH_BODY_FILE"), "rb"))
wrk.body = f:read("*a")
f:close()
"""

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"cannot parse wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def run_wrk(port: int, body_file: Path, workdir: Path, *, connections: int, duration: int,
            threads: int, path: str = "/invocations") -> dict[str, Any]:
    script = workdir / "post.lua"
    script.write_text(WRK_SCRIPT)
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency",
            "-s", str(script), f"http://{HOST}:{port}{path}"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True,
                         env={**os.environ, "BENCH_BODY_FILE": str(body_file)},
                         timeout=duration + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"tool": "wrk", "rps": rps, "p50_ms": p50, "p99_ms": p99, "requests": total,
            "non_2xx": int(bad.group(1)) if bad else 0,
            "socket_errors": errors.group(1).strip() if errors else None}


async def read_response(reader: Any) -> tuple[bytes, bytes]:
    """One HTTP/1.1 response from an asyncio stream: (status line, body)."""
    status = await reader.readline()
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return status, await reader.readexactly(length)


# The fallback client runs in its own process (``python benchmarks/serving.py --_loadgen``),
# so its CPU use is not charged to the benchmark driver and it behaves like wrk would.
async def _loadgen(port: int, body: bytes, connections: int, duration: float,
                   path: str = "/invocations") -> dict[str, Any]:
    import asyncio

    head = (f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    latencies: list[float] = []
    non_2xx = 0
    stop_at = time.perf_counter() + duration

    async def one_connection() -> None:
        nonlocal non_2xx
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                writer.write(head + body)
                status_line, _ = await read_response(reader)
                latencies.append((time.perf_counter() - t0) * 1e3)
                if not status_line.split()[1].startswith(b"2"):
                    non_2xx += 1
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(one_connection() for _ in range(connections)))
    elapsed = time.perf_counter() - t0
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]  # noqa: E731
    return {"tool": "python-asyncio", "rps": len(latencies) / elapsed, "p50_ms": pick(0.50),
            "p99_ms": pick(0.99), "requests": len(latencies), "non_2xx": non_2xx,
            "socket_errors": None}


def run_python_loadgen(port: int, body_file: Path, *, connections: int,
                       duration: int, path: str = "/invocations") -> dict[str, Any]:
    argv = [sys.executable, __file__, "--_loadgen", str(port), str(body_file),
            str(connections), str(duration), path]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=duration + 30)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- measurement
@dataclass
class Result:
    name: str
    workers: int
    startup_s: float
    rps: float
    p50_ms: float
    p99_ms: float
    load_tool: str
    load_requests: int
    load_non_2xx: int
    big_request_ms: float
    big_request_runs: list[float]
    idle_rss_mb: float
    idle_pss_mb: float
    processes: int
    predictions_sha: str


def measure(server: Server, workdir: Path, routes: list[Route], args: argparse.Namespace,
            use_wrk: bool) -> list[Result]:
    """Start ``server``, measure each of its ``routes`` (memory and start-up once), stop it."""
    import hashlib

    log = lambda msg: print(f"[{server.name}] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    log(f"starting: {' '.join(server.argv)}")
    startup = server.start(workdir)
    log(f"ready in {startup:.1f}s")
    results = []
    try:
        first = routes[0]
        status, answer = request(server.port, "POST", first.path, first.one.read_bytes())
        if status != 200:
            raise RuntimeError(f"{server.name}: 1-row request -> {status}: {answer[:300]!r}")
        # idle = loaded and warm (one request served), before any big allocation
        time.sleep(args.settle)
        rss, pss, nproc = tree_memory_mb(server.proc.pid)  # type: ignore[union-attr]
        log(f"idle RSS {rss:.0f} MiB (PSS {pss:.0f} MiB) over {nproc} processes")
        for route in routes:
            name = server.name if len(routes) == 1 and route.name == "invocations" else \
                f"{server.name} {route.name}"
            big = route.big.read_bytes()
            status, big_answer = request(server.port, "POST", route.path, big)
            if status != 200:
                raise RuntimeError(f"{name}: {args.rows}-row request -> {status}: {big_answer[:300]!r}")
            predictions = route.predictions(big_answer)
            sha = hashlib.sha256(json.dumps(predictions).encode()).hexdigest()[:16]
            runs = []
            for _ in range(args.big_runs):
                t0 = time.perf_counter()
                status, _ = request(server.port, "POST", route.path, big)
                runs.append((time.perf_counter() - t0) * 1e3)
                if status != 200:
                    raise RuntimeError(f"{name}: {args.rows}-row request -> {status}")
            log(f"{route.name}: {args.rows} rows: median {statistics.median(runs):.1f} ms")
            # a short warm-up so every worker has served requests before the measured run
            if use_wrk:
                run_wrk(server.port, route.one, workdir, connections=args.connections,
                        duration=1, threads=args.threads, path=route.path)
                load = run_wrk(server.port, route.one, workdir, connections=args.connections,
                               duration=args.duration, threads=args.threads, path=route.path)
            else:
                run_python_loadgen(server.port, route.one, connections=args.connections, duration=1,
                                   path=route.path)
                load = run_python_loadgen(server.port, route.one, connections=args.connections,
                                          duration=args.duration, path=route.path)
            log(f"{route.name}: {load['rps']:.0f} req/s, p50 {load['p50_ms']:.2f} ms, "
                f"p99 {load['p99_ms']:.2f} ms")
            if load["non_2xx"]:
                raise RuntimeError(f"{name}: {load['non_2xx']} non-2xx responses under load")
            results.append(Result(
                name=name, workers=server.workers, startup_s=round(startup, 2),
                rps=round(load["rps"], 1), p50_ms=round(load["p50_ms"], 3),
                p99_ms=round(load["p99_ms"], 3), load_tool=load["tool"],
                load_requests=load["requests"], load_non_2xx=load["non_2xx"],
                big_request_ms=round(statistics.median(runs), 2),
                big_request_runs=[round(r, 2) for r in runs], idle_rss_mb=round(rss, 1),
                idle_pss_mb=round(pss, 1), processes=nproc, predictions_sha=sha))
    finally:
        server.stop()
    return results


def deployer_server(model: Path, workers: int | None, access_log: bool = False) -> Server:
    """``workers=None``: no --workers flag, deployer's default (the CPU count).

    The access log is off unless ``access_log`` (MLflow's server writes none either); it is
    switched through the environment so the same script measures older versions too."""
    port = free_port()
    argv = [sys.executable, "-m", "deployer.serving", "serve", "--model-dir", str(model),
            "--host", HOST, "--port", str(port)]
    if workers is not None:
        argv += ["--workers", str(workers)]
    return Server("deployer", argv, port, workers or os.cpu_count() or 1,
                  env={"DEPLOYER_SERVE_ACCESS_LOG": "1" if access_log else "0"})


def mlflow_server(model: Path, workers: int | None) -> Server:
    """``workers=None``: no --workers flag, MLflow's default (1)."""
    port = free_port()
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    argv = [str(mlflow_cli), "models", "serve", "-m", str(model), "--env-manager", "local",
            "--host", HOST, "--port", str(port)]
    if workers is not None:
        argv += ["--workers", str(workers)]
    # the mlflow CLI launches `uvicorn` by name: make sure it is this venv's
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    name = "mlflow" if workers is None else f"mlflow-{workers}w"
    return Server(name, argv, port, workers or 1, env={"PATH": path})


#: MLServer in a venv of its own (its pins clash with deployer's test venv). uvloop 0.23 makes
#: MLServer 1.7 die at start; 0.21 works.
MLSERVER_REQUIREMENTS = ("mlserver==1.7.*", "mlserver-mlflow==1.7.*", "uvloop==0.21.*",
                         "mlflow==3.17.2", "scikit-learn", "skops")
MLSERVER_VENV = Path(__file__).resolve().parent / ".venv-mlserver"


def mlserver_venv(path: Path = MLSERVER_VENV) -> Path | None:
    """The MLServer venv's ``mlserver`` command, created on first use (pip, this host's
    configuration); None with a note when it cannot be installed here."""
    exe = path / "bin" / "mlserver"
    stamp = path / ".requirements"
    want = "\n".join(MLSERVER_REQUIREMENTS)
    if exe.is_file() and stamp.is_file() and stamp.read_text() == want:
        return exe
    print(f"[mlserver] installing {', '.join(MLSERVER_REQUIREMENTS)} into {path} (once)",
          file=sys.stderr, flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(path)], check=True, timeout=300)
        pip = [str(path / "bin" / "python"), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, "--upgrade", "pip"], check=True, timeout=600, capture_output=True)
        subprocess.run([*pip, *MLSERVER_REQUIREMENTS], check=True, timeout=1800, capture_output=True)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        print(f"[mlserver] not measured: cannot install it here ({exc}; "
              f"{detail.decode(errors='replace')[-300:]})", file=sys.stderr)
        return None
    stamp.write_text(want)
    return exe


def mlserver_server(model: Path, workers: int, exe: Path, workdir: Path) -> Server:
    """``mlserver start`` with the MLflow runtime serving ``model`` as ``iris``, ``workers``
    parallel workers (inference processes), HTTP on a free port (gRPC and metrics too)."""
    port, grpc, metrics = free_port(), free_port(), free_port()
    repo = workdir / "mlserver-repo"
    (repo / "iris").mkdir(parents=True, exist_ok=True)
    (repo / "settings.json").write_text(json.dumps({
        "http_port": port, "grpc_port": grpc, "metrics_port": metrics, "host": HOST,
        "parallel_workers": workers, "debug": False}))
    (repo / "iris" / "model-settings.json").write_text(json.dumps({
        "name": "iris", "implementation": "mlserver_mlflow.MLflowRuntime",
        "parameters": {"uri": str(model)}}))
    return Server("mlserver", [str(exe), "start", str(repo)], port, workers,
                  env={"MLFLOW_DISABLE_TELEMETRY": "true"}, health="/v2/models/iris/ready")


_FLOOR = """
import sys, time
t0 = time.perf_counter()
import mlflow.pyfunc
mlflow.pyfunc.load_model(sys.argv[1])
seconds = time.perf_counter() - t0
rss = [l for l in open("/proc/self/status") if l.startswith("VmRSS")][0].split()[1]
print(seconds, int(rss) / 1024)
"""


def loader_floor(model: Path, runs: int = 3) -> dict[str, float]:
    """The cost of MLflow's loader alone: median seconds (import + load) and RSS (MiB)."""
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    samples = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", _FLOOR, str(model)], capture_output=True,
                             text=True, env=env, timeout=300, check=True).stdout.split()
        samples.append((float(out[-2]), float(out[-1])))
    return {"load_s": round(statistics.median(s for s, _ in samples), 2),
            "rss_mb": round(statistics.median(r for _, r in samples), 1)}


# --------------------------------------------------------------------------- report
TARGETS = {
    "throughput": ">= 20x",
    "p99": "<= 5 ms",
    "big_request": "<= 1/3",
    "idle_rss": "<= 0.4x",
}


def verdicts(d: Result, m: Result) -> dict[str, dict[str, Any]]:
    tput = d.rps / m.rps if m.rps else float("inf")
    big = d.big_request_ms / m.big_request_ms
    rss = d.idle_rss_mb / m.idle_rss_mb
    return {
        "throughput": {"ratio": round(tput, 2), "target": TARGETS["throughput"], "pass": tput >= 20},
        "p50": {"ratio": round(d.p50_ms / m.p50_ms, 3), "target": None, "pass": None},
        "p99": {"ratio": round(d.p99_ms / m.p99_ms, 3), "target": TARGETS["p99"],
                "pass": d.p99_ms <= 5.0},
        "big_request": {"ratio": round(big, 3), "target": TARGETS["big_request"],
                        "pass": big <= 1 / 3},
        "idle_rss": {"ratio": round(rss, 3), "target": TARGETS["idle_rss"], "pass": rss <= 0.4},
        "idle_pss": {"ratio": round(d.idle_pss_mb / m.idle_pss_mb, 3), "target": None, "pass": None},
    }


def render_table(d: Result, mlflows: list[Result], floor: dict[str, float],
                 args: argparse.Namespace) -> str:
    """One column per MLflow configuration; the verdicts are against the first (its default)."""
    against = {m.name: verdicts(d, m) for m in mlflows}
    v = against[mlflows[0].name]

    def mark(key: str) -> str:
        p = v[key]["pass"]
        return "" if p is None else ("PASS" if p else "FAIL")

    def ratio(fmt: str, key: str, m: Result) -> str:
        return fmt.format(against[m.name][key]["ratio"])

    def per(label: str, dv: str, mv: Any, key: str | None, fmt: str, target: str = "",
            verdict: str = "") -> tuple[str, ...]:
        cells = [label, dv]
        for m in mlflows:
            cells += [mv(m), ratio(fmt, key, m) if key else ""]
        return (*cells, target, verdict)

    header = ["metric", f"deployer ({d.workers}w)"]
    for m in mlflows:
        header += [f"{m.name} ({m.workers}w)", "ratio"]
    rows = [
        tuple([*header, "target", ""]),
        per(f"1-row req/s (c={args.connections})", f"{d.rps:,.0f}", lambda m: f"{m.rps:,.0f}",
            "throughput", "{:.1f}x", TARGETS["throughput"], mark("throughput")),
        per("1-row p50", f"{d.p50_ms:.2f} ms", lambda m: f"{m.p50_ms:.2f} ms", "p50", "{:.3f}"),
        per("1-row p99", f"{d.p99_ms:.2f} ms", lambda m: f"{m.p99_ms:.2f} ms", "p99", "{:.3f}",
            "deployer " + TARGETS["p99"], mark("p99")),
        per(f"{args.rows:,}-row request (median of {args.big_runs})", f"{d.big_request_ms:.1f} ms",
            lambda m: f"{m.big_request_ms:.1f} ms", "big_request", "{:.3f}", TARGETS["big_request"],
            mark("big_request")),
        per("idle RSS (process tree)", f"{d.idle_rss_mb:.0f} MiB", lambda m: f"{m.idle_rss_mb:.0f} MiB",
            "idle_rss", "{:.3f}", TARGETS["idle_rss"], mark("idle_rss")),
        per("idle PSS (process tree)", f"{d.idle_pss_mb:.0f} MiB", lambda m: f"{m.idle_pss_mb:.0f} MiB",
            "idle_pss", "{:.3f}"),
        per("processes", str(d.processes), lambda m: str(m.processes), None, ""),
        per("start-up to first /ping", f"{d.startup_s:.1f} s", lambda m: f"{m.startup_s:.1f} s", None, ""),
    ]
    n = len(rows[0])
    widths = [max(len(r[i]) for r in rows) for i in range(n)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    base = mlflows[0]
    lines += [
        "",
        f"verdicts: against `{base.name}` as shipped ({base.workers} worker{'s' if base.workers > 1 else ''}).",
        f"loader floor (`import mlflow.pyfunc; load_model()` alone, one process): "
        f"{floor['load_s']:.2f} s, RSS {floor['rss_mb']:.0f} MiB = "
        f"{floor['rss_mb'] / base.idle_rss_mb:.2f}x of {base.name}'s idle RSS: a memory target below "
        "that ratio is out of reach for any server that loads with MLflow's loader.",
        f"load generator: {d.load_tool}, {args.connections} connections, {args.duration}s, "
        f"127.0.0.1; cpus: {os.cpu_count()}; servers measured one at a time",
    ]
    return "\n".join(lines)


V2_TARGETS = {"v2_throughput": ">= 0.8x /invocations", "v2_p99": "<= 5 ms",
              "v2_big": "<= /invocations", "v2_vs_mlserver": ">= 10x MLServer V2"}


def v2_verdicts(inv: Result, v2: Result, mls: Result | None) -> dict[str, dict[str, Any]]:
    """The V2 route's targets: against deployer's own /invocations (same run), and MLServer."""
    tput = v2.rps / inv.rps
    big = v2.big_request_ms / inv.big_request_ms
    out = {
        "v2_throughput": {"ratio": round(tput, 3), "target": V2_TARGETS["v2_throughput"],
                          "pass": tput >= 0.8},
        "v2_p99": {"ratio": None, "value_ms": v2.p99_ms, "target": V2_TARGETS["v2_p99"],
                   "pass": v2.p99_ms <= 5.0},
        "v2_big": {"ratio": round(big, 3), "target": V2_TARGETS["v2_big"], "pass": big <= 1.0},
    }
    if mls is not None:
        ratio = v2.rps / mls.rps if mls.rps else float("inf")
        out["v2_vs_mlserver"] = {"ratio": round(ratio, 1), "target": V2_TARGETS["v2_vs_mlserver"],
                                 "pass": ratio >= 10}
    return out


def render_v2_table(inv: Result, v2: Result, mls: Result | None, mlflow: Result,
                    args: argparse.Namespace) -> str:
    """The Open Inference Protocol route next to /invocations, MLServer and MLflow."""
    cols = [("deployer /invocations", inv), ("deployer V2", v2)]
    if mls is not None:
        cols.append(("MLServer V2", mls))
    cols.append((f"{mlflow.name} /invocations", mlflow))
    rows = [("route", *[f"{n} ({r.workers}w)" for n, r in cols])]
    rows.append((f"1-row req/s (c={args.connections})", *[f"{r.rps:,.0f}" for _, r in cols]))
    rows.append(("1-row p50", *[f"{r.p50_ms:.2f} ms" for _, r in cols]))
    rows.append(("1-row p99", *[f"{r.p99_ms:.2f} ms" for _, r in cols]))
    rows.append((f"{args.rows:,}-row request", *[f"{r.big_request_ms:.1f} ms" for _, r in cols]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    for key, v in v2_verdicts(inv, v2, mls).items():
        shown = f"{v['value_ms']:.2f} ms" if v["ratio"] is None else f"{v['ratio']}x"
        lines.append(f"{key}: {shown} (target {v['target']}): {'PASS' if v['pass'] else 'FAIL'}")
    if mls is None:
        lines.append("MLServer: not measured (--no-mlserver, or it could not be installed here)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    parser.add_argument("--duration", type=int, default=10, help="seconds of 1-row load per server")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--rows", type=int, default=10_000, help="rows in the big request")
    parser.add_argument("--big-runs", type=int, default=7, help="runs of the big request (median)")
    parser.add_argument("--workers", type=int, default=None,
                        help="deployer workers (default: deployer's own default, the CPU count)")
    parser.add_argument("--mlflow-workers", type=int, default=None,
                        help="the equal-workers MLflow run (default: deployer's worker count; "
                             "0 skips it). MLflow as shipped always runs too.")
    parser.add_argument("--settle", type=float, default=2.0, help="idle seconds before reading RSS")
    parser.add_argument("--no-wrk", action="store_true", help="use the Python load generator")
    parser.add_argument("--model-dir", type=Path, help="use this saved iris-like model instead")
    parser.add_argument("--access-log", action="store_true",
                        help="measure deployer with its access log on (default: off)")
    parser.add_argument("--only", choices=["deployer", "mlflow"],
                        help="measure one server only (no comparison)")
    parser.add_argument("--no-v2", action="store_true",
                        help="skip the Open Inference Protocol route (deployer's V2 and MLServer)")
    parser.add_argument("--no-mlserver", action="store_true",
                        help="skip MLServer (otherwise installed once into benchmarks/.venv-mlserver)")
    args = parser.parse_args(argv)

    use_wrk = not args.no_wrk and shutil.which("wrk") is not None
    deployer_workers = args.workers or os.cpu_count() or 1
    equal = deployer_workers if args.mlflow_workers is None else args.mlflow_workers
    with tempfile.TemporaryDirectory(prefix="deployer-bench-") as tmp:
        workdir = Path(tmp)
        model = args.model_dir or save_iris_model(workdir)
        files = {name: workdir / f"{name}.json" for name in ("one", "big", "v2one", "v2big")}
        files["one"].write_bytes(one_row_body())
        files["big"].write_bytes(many_rows_body(args.rows))
        files["v2one"].write_bytes(v2_body([ONE_ROW]))
        files["v2big"].write_bytes(v2_body(_rows(args.rows)))
        invocations = Route("invocations", "/invocations", files["one"], files["big"])
        v2 = Route("V2", f"/v2/models/{model.name}/infer", files["v2one"], files["v2big"])
        deployer_routes = [invocations] if args.no_v2 else [invocations, v2]
        if args.only:
            server = (deployer_server(model, args.workers, args.access_log)
                      if args.only == "deployer"
                      else mlflow_server(model, args.mlflow_workers))
            routes = deployer_routes if args.only == "deployer" else [invocations]
            print(json.dumps([asdict(r) for r in measure(server, workdir, routes, args, use_wrk)],
                             indent=2))
            return 0
        plan: list[tuple[Server, list[Route]]] = [(mlflow_server(model, None), [invocations])]
        if equal and equal != 1:
            plan.append((mlflow_server(model, equal), [invocations]))
        plan.append((deployer_server(model, args.workers, args.access_log), deployer_routes))
        exe = None if args.no_v2 or args.no_mlserver else mlserver_venv()
        if exe is not None:
            plan.append((mlserver_server(model, deployer_workers, exe, workdir),
                         [Route("V2", "/v2/models/iris/infer", files["v2one"], files["v2big"])]))
        results = [r for server, routes in plan for r in measure(server, workdir, routes, args, use_wrk)]
        floor = loader_floor(model)

    by_name = {r.name: r for r in results}
    d = by_name["deployer"] if "deployer" in by_name else by_name["deployer invocations"]
    mlflows = [r for r in results if r.name.startswith("mlflow")]
    d_v2, mls = by_name.get("deployer V2"), by_name.get("mlserver V2")
    if len({r.predictions_sha for r in results}) != 1:
        print("error: the servers returned different predictions for the same rows: "
              + ", ".join(f"{r.name}={r.predictions_sha}" for r in results), file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"deployer": asdict(d), "mlflow": [asdict(m) for m in mlflows],
                          "deployer_v2": asdict(d_v2) if d_v2 else None,
                          "mlserver_v2": asdict(mls) if mls else None,
                          "comparison": {m.name: verdicts(d, m) for m in mlflows},
                          "v2": v2_verdicts(d, d_v2, mls) if d_v2 else None,
                          "loader_floor": floor,
                          "settings": {k: (str(val) if isinstance(val, Path) else val)
                                       for k, val in vars(args).items()},
                          "cpus": os.cpu_count()}, indent=2))
    else:
        print(render_table(d, mlflows, floor, args))
        if d_v2 is not None:
            print("\nOpen Inference Protocol (V2):")
            print(render_v2_table(d, d_v2, mls, mlflows[0], args))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "--_loadgen":
        import asyncio

        _port, _body, _conns, _dur, _path = sys.argv[2:]
        print(json.dumps(asyncio.run(_loadgen(int(_port), Path(_body).read_bytes(), int(_conns),
                                              float(_dur), _path))))
        sys.exit(0)
    sys.exit(main())

"""Where the model is loaded: once before forking (preload) or in each worker (per-worker).

The pure decision is tested directly; the process model is tested on a real server with a
model that does not survive fork (``ThreadBound``: its load starts the thread that scores, as
TensorFlow's runtime does). Real TensorFlow, XGBoost, LightGBM and PyTorch models are served
the same way in tests/building/test_flavor_corpus.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from deployer.serving.loading import (
    AUTO,
    PER_WORKER,
    PRELOAD,
    decide,
    decide_for_model_dir,
    fork_hazards,
    requirement_names,
)
from tests.serving.conftest import start_deployer

BODY = {"dataframe_split": {"columns": ["a"], "data": [[1.0], [2.5]]}}
DOUBLED = {"predictions": [{"a": 2.0}, {"a": 5.0}]}


# ---------------------------------------------------------------------------- the decision
@pytest.mark.parametrize(("loader", "mode"), [
    ("mlflow.tensorflow", PER_WORKER), ("mlflow.keras", PER_WORKER), ("mlflow.pytorch", PER_WORKER),
    ("mlflow.xgboost", PER_WORKER), ("mlflow.lightgbm", PER_WORKER), ("mlflow.spark", PER_WORKER),
    ("mlflow.transformers", PER_WORKER), ("mlflow.sentence_transformers", PER_WORKER),
    ("mlflow.sklearn", PRELOAD), ("mlflow.onnx", PRELOAD), ("mlflow.catboost", PRELOAD),
    ("mlflow.statsmodels", PRELOAD), ("mlflow.prophet", PRELOAD),
])
def test_known_flavors_decide_with_certainty(loader: str, mode: str) -> None:
    decision = decide(loader, ["numpy"])
    assert (decision.mode, decision.certain) == (mode, True)
    assert loader.split(".")[1] in decision.reason


def test_a_custom_model_is_per_worker_when_its_requirements_or_code_name_such_a_library() -> None:
    by_requirement = decide("mlflow.pyfunc.model", ["pandas", "Tensorflow_CPU"])
    assert by_requirement.mode == PER_WORKER and "tensorflow-cpu" in by_requirement.reason
    by_code = decide("mlflow.pyfunc.loaders.code_model", ["pandas"], ["numpy", "torch"])
    assert by_code.mode == PER_WORKER and "imports torch" in by_code.reason
    undecided = decide("mlflow.pyfunc.model", ["pandas", "scikit-learn"], ["sklearn"])
    assert (undecided.mode, undecided.certain) == (PRELOAD, False)


def test_an_explicit_mode_wins_over_the_flavor() -> None:
    assert decide("mlflow.tensorflow", requested=PRELOAD).mode == PRELOAD
    assert decide("mlflow.sklearn", requested=PER_WORKER).mode == PER_WORKER
    with pytest.raises(ValueError):
        decide("mlflow.sklearn", requested="sometimes")


def test_requirement_names_skip_options_comments_and_urls() -> None:
    lines = ["--extra-index-url https://x/simple", "# comment", "torch==2.1 ; python_version>'3'",
             "XGBoost_CPU>=2", "", "-r other.txt"]
    assert requirement_names(lines) == ("torch", "xgboost-cpu")


def test_fork_hazards_names_imports_and_threads() -> None:
    assert fork_hazards(["numpy", "pandas"]) == ""
    assert fork_hazards(["numpy", "tensorflow", "torch.nn"], threads_started=0) == "imported tensorflow"
    assert fork_hazards(["xgboost"], threads_started=2) == "imported xgboost and started 2 threads"


def test_decisions_from_saved_model_directories(sklearn_model: Path, thread_bound_model: Path) -> None:
    sk = decide_for_model_dir(sklearn_model)
    assert (sk.mode, sk.certain) == (PRELOAD, True)
    custom = decide_for_model_dir(thread_bound_model)
    assert (custom.mode, custom.certain) == (PRELOAD, False)
    assert decide_for_model_dir(thread_bound_model, PER_WORKER).mode == PER_WORKER
    assert decide_for_model_dir(sklearn_model, AUTO, ["tensorflow"]).mode == PRELOAD  # flavor first


# ---------------------------------------------------------------------------- the process model
def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(x) for x in out.stdout.split()]


@pytest.mark.slow
def test_per_worker_loading_serves_a_model_that_does_not_survive_fork(
        thread_bound_model: Path, tmp_path: Path) -> None:
    server = start_deployer(thread_bound_model, tmp_path, "--workers", "3", "--load-mode", "per-worker",
                            "--timeout", "10")
    try:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: server.post(BODY), range(40)))
        assert {a.status for a in answers} == {200}, server.log()[-3000:]
        assert all(a.json() == DOUBLED for a in answers)
        workers = _children(server.proc.pid)
        assert len(workers) == 3
        log = server.log()
        assert "load mode per-worker" in log
        assert log.count("loaded in") == 3  # each worker loaded its own copy
        # a killed worker is replaced by one that loads the model again
        os.kill(workers[0], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and server.log().count("loaded in") < 4:
            time.sleep(0.2)
        assert server.log().count("loaded in") == 4, server.log()[-3000:]
        assert all(server.post(BODY).status == 200 for _ in range(10))
    finally:
        assert server.stop() == 0


@pytest.mark.slow
def test_preloading_such_a_model_hangs_every_forked_worker(thread_bound_model: Path, tmp_path: Path) -> None:
    """What per-worker loading prevents: forced preload with 2 workers answers 504 (timeout)."""
    server = start_deployer(thread_bound_model, tmp_path, "--workers", "2", "--load-mode", "preload",
                            "--timeout", "2", "--graceful-timeout", "1")
    try:
        answer = server.post(BODY)
        assert answer.status == 504, answer.body
    finally:
        server.stop(signal.SIGKILL)


@pytest.mark.slow
def test_an_undecided_model_that_starts_a_thread_is_served_in_one_process(
        thread_bound_model: Path, tmp_path: Path) -> None:
    """auto, nothing known about the model: preload, see the thread it started, do not fork."""
    server = start_deployer(thread_bound_model, tmp_path, "--workers", "2", "--timeout", "10")
    try:
        assert all(server.post(BODY).json() == DOUBLED for _ in range(5))
        assert _children(server.proc.pid) == []
        assert "started 1 thread while loading, which does not survive fork: serving with 1 worker" \
            in server.log()
    finally:
        assert server.stop() == 0


@pytest.mark.slow
def test_a_load_failure_in_a_worker_stops_the_server_with_the_models_error(
        load_context_fails_model: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "deployer.serving", "serve", "--model-dir", str(load_context_fails_model),
         "--port", "0", "--host", "127.0.0.1", "--workers", "2", "--load-mode", "per-worker"],
        capture_output=True, text=True, timeout=180)
    assert proc.returncode == 1, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-2:]
    assert "load_context failure on purpose" in last[0] and "(in a worker: load mode per-worker)" in last[0]
    assert last[1].startswith("  hint: ")
    assert "Traceback" not in "\n".join(last)
    assert "listening on" not in proc.stderr  # the port never accepted a connection

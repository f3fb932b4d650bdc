"""Server options: flags, environment variables, defaults, validation."""

from __future__ import annotations

import pytest

from deployer.errors import UsageError
from deployer.serving.__main__ import build_parser, options_from_args
from deployer.serving.options import ServeOptions, cpu_count


def _parse(argv: list[str], monkeypatch: pytest.MonkeyPatch, **env: str) -> ServeOptions:
    for key in list(__import__("os").environ):
        if key.startswith(("DEPLOYER_SERVE_", "SAGEMAKER_", "MLFLOW_SCORING", "MLFLOW_MODELS")):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return options_from_args(build_parser().parse_args(["serve", *argv])).validate()


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    opts = _parse([], monkeypatch)
    assert opts.model_dir == "/opt/ml/model"
    assert (opts.host, opts.port, opts.timeout) == ("0.0.0.0", 8080, 60.0)
    assert opts.max_body_bytes == 100 * 1024 * 1024
    assert opts.effective_workers == cpu_count()
    assert opts.effective_blas_threads * opts.effective_workers <= max(cpu_count(), 1)


def test_flags_beat_env_beat_platform_env(monkeypatch: pytest.MonkeyPatch) -> None:
    opts = _parse(["--port", "9000"], monkeypatch, DEPLOYER_SERVE_PORT="9001",
                  SAGEMAKER_BIND_TO_PORT="9002")
    assert opts.port == 9000
    assert _parse([], monkeypatch, DEPLOYER_SERVE_PORT="9001",
                  SAGEMAKER_BIND_TO_PORT="9002").port == 9001
    assert _parse([], monkeypatch, SAGEMAKER_BIND_TO_PORT="9002").port == 9002
    assert _parse([], monkeypatch, MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT="7").timeout == 7.0
    assert _parse([], monkeypatch, MLFLOW_MODELS_WORKERS="3").workers == 3


def test_every_option_has_an_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    opts = _parse([], monkeypatch, DEPLOYER_SERVE_MODEL_DIR="/m", DEPLOYER_SERVE_HOST="::1",
                  DEPLOYER_SERVE_WORKERS="3", DEPLOYER_SERVE_TIMEOUT="2.5",
                  DEPLOYER_SERVE_MAX_BODY_BYTES="10", DEPLOYER_SERVE_BLAS_THREADS="2",
                  DEPLOYER_SERVE_THREADS="8", DEPLOYER_SERVE_MODEL_NAME="n",
                  DEPLOYER_SERVE_MODEL_VERSION="v", DEPLOYER_SERVE_GRACEFUL_TIMEOUT="3")
    assert (opts.model_dir, opts.host, opts.workers, opts.timeout, opts.max_body_bytes,
            opts.blas_threads, opts.threads, opts.model_name, opts.model_version,
            opts.effective_graceful_timeout) == ("/m", "::1", 3, 2.5, 10, 2, 8, "n", "v", 3.0)


@pytest.mark.parametrize(("argv", "env"), [
    (["--workers", "0"], {}),
    (["--timeout", "0"], {}),
    (["--port", "70000"], {}),
    (["--max-body-bytes", "0"], {}),
    ([], {"DEPLOYER_SERVE_PORT": "eighty"}),
    ([], {"DEPLOYER_SERVE_TIMEOUT": "soon"}),
])
def test_bad_values_are_usage_errors(monkeypatch: pytest.MonkeyPatch, argv: list[str],
                                     env: dict[str, str]) -> None:
    with pytest.raises(UsageError) as info:
        _parse(argv, monkeypatch, **env)
    assert info.value.exit_code == 2
    assert info.value.fix


def test_graceful_timeout_fits_sagemakers_30_seconds() -> None:
    assert ServeOptions(model_dir="m").effective_graceful_timeout < 30
    assert ServeOptions(model_dir="m", timeout=2).effective_graceful_timeout == 3.0

"""Server options: flags, environment variables, defaults, validation."""

from __future__ import annotations

import json

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
    (["--grpc-port", "70000"], {}),
    ([], {"DEPLOYER_SERVE_GRPC_PORT": "-1"}),
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


# ---------------------------------------------------------------------------- the option walk
# Three distinct non-default values per option: (config file, environment, flag).
WALK: dict[str, tuple[object, object, object]] = {
    "host": ("10.0.0.1", "10.0.0.2", "10.0.0.3"),
    "port": (9001, 9002, 9003),
    "grpc_port": (9001, 9002, 9003),
    "workers": (2, 3, 4),
    "timeout": (5.5, 6.5, 7.5),
    "max_body_bytes": (1001, 1002, 1003),
    "blas_threads": (1, 2, 3),
    "threads": (5, 6, 7),
    "load_mode": ("preload", "per-worker", "preload"),
    "graceful_timeout": (1.0, 2.0, 3.0),
    "model_name": ("a", "b", "c"),
    "model_version": ("1", "2", "3"),
    "log_level": ("debug", "warning", "error"),
    "log_format": ("json", "text", "json"),
    "access_log": (False, True, False),
    "batching": (False, True, False),
    "http": ("uvicorn", "deployer", "uvicorn"),
    "api_key_file": ("KEYFILE1", "KEYFILE2", "KEYFILE3"),
    "auth_exempt": ("/a", "/b,/c", "/v2/*"),
    "model_config": ('{"x": 1}', '{"x": "two"}', '{"x": [3]}'),
    "model_repository": ("/repo1", "/repo2", "/repo3"),
    "default_model": ("a", "b", "c"),
    "sagemaker_multi_model": (True, False, True),
    "model_memory_limit": ("1GiB", "2000000", "1.5GB"),
    "model_root": ("/m1", "/m2", "/m3"),
}


def _clean_env() -> dict[str, str | None]:
    import os

    return {k: None for k in os.environ
            if k.startswith(("DEPLOYER_", "SAGEMAKER_", "MLFLOW_SCORING", "MLFLOW_MODELS"))}


def _as_env(value: object) -> str:
    return ("1" if value else "0") if isinstance(value, bool) else str(value)


def _as_flag(name: str, value: object) -> list[str]:
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return [flag if value else "--no-" + name.replace("_", "-")]
    return [flag, str(value)]


def _toml(name: str, value: object) -> str:
    if isinstance(value, bool):
        return f"{name} = {'true' if value else 'false'}\n"
    if isinstance(value, (int, float)):
        return f"{name} = {value}\n"
    return f"{name} = {json.dumps(value)}\n"  # a TOML basic string (JSON's escapes)


def test_the_walk_covers_every_option() -> None:
    from deployer.serving.options import option_fields

    assert {f.name for f in option_fields()} == set(WALK)


@pytest.fixture()
def key_files(tmp_path):  # type: ignore[no-untyped-def]
    out = {}
    for i in (1, 2, 3):
        path = tmp_path / f"key{i}"
        path.write_text(f"k{i}-" + "x" * 30 + "\n")
        out[f"KEYFILE{i}"] = str(path)
    return out


@pytest.mark.parametrize("name", sorted(WALK))
def test_option_walk_deployer_serve(name: str, tmp_path, key_files) -> None:  # type: ignore[no-untyped-def]
    """`deployer serve`: flag > DEPLOYER_SERVE_<NAME> > [serve] in deployer.toml > default."""
    import json

    from click.testing import CliRunner

    from deployer.cli import cli
    from deployer.serving.options import default_of

    file_v, env_v, flag_v = (key_files.get(v, v) if isinstance(v, str) else v
                             for v in WALK[name])
    config = tmp_path / "deployer.toml"
    config.write_text("[serve]\n" + _toml(name, file_v))
    env_name = "DEPLOYER_SERVE_" + name.upper()

    def resolved(args: list[str], env: dict[str, str], with_config: bool) -> object:
        root = ["--config", str(config)] if with_config else []
        res = CliRunner().invoke(cli, [*root, "serve", "-m", str(tmp_path), "--dry-run",
                                       "--output", "json", *args],
                                 env={**_clean_env(), **env})
        assert res.exit_code == 0, res.output
        return json.loads(res.stdout)[name]

    default = default_of(name, cli=True)
    if name == "log_level":
        default = "info"  # follows -v/-q when unset
    assert resolved([], {}, False) == default
    assert resolved([], {}, True) == file_v
    assert resolved([], {env_name: _as_env(env_v)}, True) == env_v
    assert resolved(_as_flag(name, flag_v), {env_name: _as_env(env_v)}, True) == flag_v


@pytest.mark.parametrize("name", sorted(WALK))
def test_option_walk_image_entrypoint(name: str, monkeypatch: pytest.MonkeyPatch,
                                      key_files) -> None:  # type: ignore[no-untyped-def]
    """`python -m deployer.serving serve` (the image): flag > DEPLOYER_SERVE_<NAME> > default
    (no config file inside an image)."""
    from deployer.serving.options import default_of

    _, env_v, flag_v = (key_files.get(v, v) if isinstance(v, str) else v for v in WALK[name])
    env_name = "DEPLOYER_SERVE_" + name.upper()
    assert getattr(_parse([], monkeypatch), name) == default_of(name)
    assert getattr(_parse([], monkeypatch, **{env_name: _as_env(env_v)}), name) == env_v
    assert getattr(_parse(_as_flag(name, flag_v), monkeypatch,
                          **{env_name: _as_env(env_v)}), name) == flag_v


@pytest.mark.parametrize(("name", "variable", "value", "expected"), [
    ("timeout", "MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT", "7", 7.0),
    ("workers", "MLFLOW_MODELS_WORKERS", "3", 3),
    ("port", "SAGEMAKER_BIND_TO_PORT", "9555", 9555),
])
def test_platform_variables_in_both_entry_points(name: str, variable: str, value: str,
                                                 expected: object, tmp_path,  # type: ignore[no-untyped-def]
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from click.testing import CliRunner

    from deployer.cli import cli

    assert getattr(_parse([], monkeypatch, **{variable: value}), name) == expected
    # DEPLOYER_SERVE_<NAME> beats the platform variable
    assert getattr(_parse([], monkeypatch, **{variable: value,
                                              "DEPLOYER_SERVE_" + name.upper(): "5"}), name) == 5
    res = CliRunner().invoke(cli, ["serve", "-m", str(tmp_path), "--dry-run", "--output", "json"],
                             env={**_clean_env(), variable: value})
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)[name] == expected


def test_bad_values_from_each_source_are_usage_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from deployer.cli import cli

    config = tmp_path / "deployer.toml"
    config.write_text('[serve]\nlog_format = "xml"\n')
    for args, env in ((["--threads", "0"], {}), ([], {"DEPLOYER_SERVE_ACCESS_LOG": "maybe"}),
                      ([], {"DEPLOYER_SERVE_HTTP": "nginx"})):
        res = CliRunner().invoke(cli, ["serve", "-m", str(tmp_path), "--dry-run", *args],
                                 env={**_clean_env(), **env})
        assert res.exit_code == 2, (args, env, res.output)
        assert "Traceback" not in res.output
    res = CliRunner().invoke(cli, ["--config", str(config), "serve", "-m", str(tmp_path),
                                   "--dry-run"], env=_clean_env())
    assert res.exit_code != 0 and "log_format" in res.output and "Traceback" not in res.output


def test_api_key_sources_and_errors(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from deployer.serving.options import read_api_key

    key = "s3cret-" + "y" * 20
    file = tmp_path / "key"
    file.write_text(key + "\n")
    opts = ServeOptions()
    assert read_api_key(opts, {}) is None
    assert read_api_key(opts, {"DEPLOYER_API_KEY": key}) == key.encode()
    assert read_api_key(ServeOptions(api_key_file=str(file)),
                        {"DEPLOYER_API_KEY": "other-" + "z" * 20}) == key.encode()
    for bad in ("short", "has a space in the middle of it"):
        with pytest.raises(UsageError) as info:
            read_api_key(opts, {"DEPLOYER_API_KEY": bad})
        assert bad not in info.value.format_message()  # the key is never echoed
    with pytest.raises(UsageError) as info:
        read_api_key(ServeOptions(api_key_file=str(tmp_path / "missing")), {})
    assert "--api-key-file" in info.value.format_message()


@pytest.mark.parametrize("changes", [
    {},
    {"host": "127.0.0.1", "port": 18080, "workers": 3, "timeout": 7.5, "max_body_bytes": 1000,
     "blas_threads": 2, "threads": 1, "load_mode": "per-worker", "graceful_timeout": 4.0,
     "model_name": "iris", "model_version": "3", "log_level": "warning", "log_format": "json",
     "access_log": False, "batching": False, "http": "uvicorn", "api_key_file": "/run/key",
     "auth_exempt": "/ping", "model_config": '{"x": "a b", "n": [1, 2]}', "grpc_port": 0,
     "model_repository": "/models", "default_model": "iris", "sagemaker_multi_model": True,
     "model_memory_limit": "2GiB", "model_root": "/mnt/models"},
    {"models": ("iris=/models/iris", "churn=/models/churn"), "default_model": "churn"},
])
def test_to_argv_gives_the_image_entrypoint_the_same_options(
        changes: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> None:
    """`deployer serve --env-manager virtualenv` starts `python -m deployer.serving serve` in
    the model's environment with to_argv's flags: every option survives the trip, and an unset
    one (None) stays unset."""
    from dataclasses import replace

    from deployer.serving.options import option_fields, to_argv

    opts = replace(ServeOptions(model_dir="/models/iris"), **changes)  # type: ignore[arg-type]
    if len(changes) > 2:  # every option, so that a new one is checked too
        assert {f.name for f in option_fields()} == set(changes)
    assert _parse(to_argv(opts), monkeypatch) == opts
    if not changes:
        assert "--workers" not in to_argv(opts) and opts.workers is None

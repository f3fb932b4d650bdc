"""MLmodel parsing: every field, both env forms, legacy layouts, and each validation error."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from deployer.errors import ModelFormatError, ModelNotFoundError, UnsafePathError
from deployer.model.mlmodel import EnvFiles, InputExampleInfo, MLModel, parse_mlmodel
from tests.fixtures.models import ALL_SAVED_MODELS
from tests.model._edit import altered, copy_model, read_mlmodel


@pytest.mark.parametrize("fixture", ALL_SAVED_MODELS)
def test_fields_match_what_mlflow_reads(fixture: str, request: pytest.FixtureRequest) -> None:
    """Our parse of each real MLflow-saved model agrees with mlflow.models.Model.load."""
    from mlflow.models import Model

    path: Path = request.getfixturevalue(fixture)
    ours = parse_mlmodel(path)
    theirs = Model.load(str(path))
    assert set(ours.flavors) == set(theirs.flavors)
    assert ours.model_uuid == theirs.model_uuid
    assert ours.run_id == theirs.run_id
    assert ours.model_id == theirs.model_id
    assert ours.utc_time_created == theirs.utc_time_created
    assert ours.mlflow_version == theirs.mlflow_version == "3.17.2"
    assert ours.model_size_bytes == theirs.model_size_bytes
    assert ours.metadata == theirs.metadata
    assert ours.artifact_path == theirs.artifact_path
    pf = theirs.flavors["python_function"]
    assert ours.pyfunc is not None
    assert ours.pyfunc.loader_module == pf["loader_module"]
    assert ours.pyfunc.python_version == pf["python_version"]
    assert ours.pyfunc.code == pf.get("code")
    assert ours.pyfunc.env == EnvFiles(conda="conda.yaml", virtualenv="python_env.yaml")
    if theirs.saved_input_example_info:
        info = theirs.saved_input_example_info
        assert ours.saved_input_example_info == InputExampleInfo(
            artifact_path=info["artifact_path"],
            type=info["type"],
            pandas_orient=info.get("pandas_orient"),
            serving_input_path=info.get("serving_input_path"),
            extra={},
        )
    else:
        assert ours.saved_input_example_info is None
    assert (ours.signature is None) == (theirs.signature is None)


def test_sklearn_skops_model(sklearn_model: Path) -> None:
    m = parse_mlmodel(sklearn_model)
    assert m.pyfunc is not None
    assert m.pyfunc.loader_module == "mlflow.sklearn"
    assert m.pyfunc.model_path == "model.skops"
    assert m.pyfunc.predict_fn == "predict"
    assert m.flavors["sklearn"]["serialization_format"] == "skops"
    assert m.saved_input_example_info is not None
    assert m.saved_input_example_info.type == "dataframe"
    assert m.saved_input_example_info.pandas_orient == "split"
    # keys MLflow 3 writes that deployer has no field for are kept, not dropped
    assert {"is_signature_from_type_hint", "type_hint_from_example", "prompts"} <= set(m.extra)


def test_custom_pyfunc_extra_keys_and_artifacts(custom_pyfunc_model: Path) -> None:
    m = parse_mlmodel(custom_pyfunc_model)
    assert m.pyfunc is not None
    assert m.pyfunc.loader_module == "mlflow.pyfunc.model"
    assert m.pyfunc.code == "code"
    assert m.pyfunc.extra["python_model"] == "python_model.pkl"
    assert m.pyfunc.extra["artifacts"]["n_file"]["path"] == "artifacts/n.txt"
    assert "cloudpickle_version" in m.pyfunc.extra


def test_legacy_2018_layout(legacy_2018_model: Path) -> None:
    m = parse_mlmodel(legacy_2018_model)
    assert m.utc_time_created == "2018-05-25T17:28:53.35"  # from time_created
    assert m.artifact_path == "model"
    assert m.run_id == "0927ac17b2954dc0b4d944e6834817fd"
    assert m.pyfunc is not None
    assert m.pyfunc.loader_module == "mlflow.sklearn"
    assert m.pyfunc.env == EnvFiles(conda=None, virtualenv=None)
    assert m.pyfunc.python_version is None
    assert m.flavors["sklearn"]["sklearn_version"] == "0.19.1"
    assert m.signature is None
    assert m.mlflow_version is None


def test_legacy_data_env_layout(legacy_data_env_model: Path) -> None:
    m = parse_mlmodel(legacy_data_env_model)
    assert m.pyfunc is not None
    assert m.pyfunc.data == "data/model.pkl"
    assert m.pyfunc.code == "code"
    assert m.pyfunc.env == EnvFiles(conda="mlflow_env.yml", virtualenv=None)  # legacy string form
    assert m.pyfunc.extra == {"main": "sklearn_iris"}
    assert m.utc_time_created == "2018-06-28 18:51:36.148154"


def test_every_optional_field(tmp_path: Path, sklearn_model: Path) -> None:
    def change(d: dict) -> None:
        d["artifact_path"] = "mlflow-artifacts:/1/models/m-1/artifacts"
        d["run_id"] = "abc123"
        d["model_id"] = "m-0123456789abcdef"
        d["databricks_runtime"] = "15.4.x-scala2.12"
        d["metadata"] = {"team": "fraud", "tags": ["a", "b"]}
        d["env_vars"] = ["OPENAI_API_KEY"]
        d["flavors"]["python_function"]["streamable"] = False

    m = parse_mlmodel(altered(sklearn_model, tmp_path / "m", change))
    assert m.artifact_path == "mlflow-artifacts:/1/models/m-1/artifacts"
    assert m.run_id == "abc123"
    assert m.model_id == "m-0123456789abcdef"
    assert m.databricks_runtime == "15.4.x-scala2.12"
    assert m.metadata == {"team": "fraud", "tags": ["a", "b"]}
    assert m.extra["env_vars"] == ["OPENAI_API_KEY"]
    assert m.pyfunc is not None and m.pyfunc.extra["streamable"] is False


def test_unquoted_timestamp_stays_text(tmp_path: Path) -> None:
    """YAML would turn an unquoted timestamp into a datetime; we keep the text as written."""
    d = tmp_path / "m"
    d.mkdir()
    (d / "MLmodel").write_text(
        "time_created: 2018-05-25T17:28:53.35\nflavors:\n  python_function:\n    loader_module: mlflow.sklearn\n"
    )
    assert parse_mlmodel(d).utc_time_created == "2018-05-25T17:28:53.35"


def test_unknown_flavors_kept(tmp_path: Path, sklearn_model: Path) -> None:
    def change(d: dict) -> None:
        d["flavors"]["my_company.flavor-v2"] = {"weights": "w.bin", "nested": {"x": 1}}
        d["flavors"]["empty_flavor"] = None

    m = parse_mlmodel(altered(sklearn_model, tmp_path / "m", change))
    assert m.flavors["my_company.flavor-v2"] == {"weights": "w.bin", "nested": {"x": 1}}
    assert m.flavors["empty_flavor"] == {}
    assert m.pyfunc is not None


def test_non_pyfunc_model_parses(tmp_path: Path) -> None:
    """parse_mlmodel reads any model; load_model is where pyfunc becomes mandatory."""
    d = tmp_path / "m"
    d.mkdir()
    (d / "MLmodel").write_text("flavors:\n  sklearn:\n    pickled_model: model.pkl\n")
    m = parse_mlmodel(d)
    assert isinstance(m, MLModel)
    assert m.pyfunc is None


def test_env_mapping_with_only_conda(tmp_path: Path, sklearn_model: Path) -> None:
    m = parse_mlmodel(
        altered(
            sklearn_model,
            tmp_path / "m",
            lambda d: d["flavors"]["python_function"].update(env={"conda": "conda.yaml"}),
        )
    )
    assert m.pyfunc is not None and m.pyfunc.env == EnvFiles(conda="conda.yaml", virtualenv=None)


# --- validation errors ----------------------------------------------------------------------


def test_no_mlmodel(tmp_path: Path) -> None:
    (tmp_path / "model.pkl").write_bytes(b"x")
    with pytest.raises(ModelNotFoundError) as exc:
        parse_mlmodel(tmp_path)
    assert "no MLmodel file" in exc.value.what
    assert "model.pkl" in exc.value.what  # says what the directory does hold
    assert exc.value.fix


def test_yaml_does_not_parse(tmp_path: Path) -> None:
    (tmp_path / "MLmodel").write_text(
        "flavors:\n  python_function:\n    loader_module: [unclosed\n"
    )
    with pytest.raises(ModelFormatError) as exc:
        parse_mlmodel(tmp_path)
    assert "YAML does not parse" in exc.value.what
    assert "line" in exc.value.what
    assert exc.value.where == str(tmp_path / "MLmodel")


def test_yaml_python_tags_are_refused(tmp_path: Path) -> None:
    (tmp_path / "MLmodel").write_text("flavors: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ModelFormatError, match="YAML does not parse"):
        parse_mlmodel(tmp_path)


def test_mlmodel_not_a_mapping(tmp_path: Path) -> None:
    (tmp_path / "MLmodel").write_text("- just\n- a list\n")
    with pytest.raises(ModelFormatError, match="must be a YAML mapping"):
        parse_mlmodel(tmp_path)


def test_no_flavors(tmp_path: Path) -> None:
    (tmp_path / "MLmodel").write_text("run_id: abc\n")
    with pytest.raises(ModelFormatError, match="no 'flavors'"):
        parse_mlmodel(tmp_path)


def test_flavor_not_a_mapping(tmp_path: Path, sklearn_model: Path) -> None:
    model = altered(
        sklearn_model, tmp_path / "m", lambda d: d["flavors"].update(sklearn="model.skops")
    )
    with pytest.raises(ModelFormatError) as exc:
        parse_mlmodel(model)
    assert "flavor 'sklearn' must be a mapping" in exc.value.what
    assert "'model.skops'" in exc.value.what


def test_pyfunc_flavor_not_a_mapping(tmp_path: Path, sklearn_model: Path) -> None:
    model = altered(
        sklearn_model, tmp_path / "m", lambda d: d["flavors"].update(python_function=["x"])
    )
    with pytest.raises(ModelFormatError, match="flavor 'python_function' must be a mapping"):
        parse_mlmodel(model)


def test_missing_loader_module(tmp_path: Path, sklearn_model: Path) -> None:
    model = altered(
        sklearn_model,
        tmp_path / "m",
        lambda d: d["flavors"]["python_function"].pop("loader_module"),
    )
    with pytest.raises(ModelFormatError, match="loader_module' is missing"):
        parse_mlmodel(model)


@pytest.mark.parametrize(
    "loader",
    [
        "mlflow.sklearn; rm -rf /",
        "mlflow.sklearn\nRUN curl evil",
        'mlflow."sklearn"',
        "../evil",
        "",
        42,
    ],
)
def test_loader_module_must_be_a_module_name(
    tmp_path: Path, sklearn_model: Path, loader: object
) -> None:
    model = altered(
        sklearn_model,
        tmp_path / "m",
        lambda d: d["flavors"]["python_function"].update(loader_module=loader),
    )
    with pytest.raises(ModelFormatError, match="dotted Python module name"):
        parse_mlmodel(model)


def test_predict_fn_must_be_an_identifier(tmp_path: Path, sklearn_model: Path) -> None:
    model = altered(
        sklearn_model,
        tmp_path / "m",
        lambda d: d["flavors"]["python_function"].update(predict_fn="predict()\nimport os"),
    )
    with pytest.raises(ModelFormatError, match="predict_fn"):
        parse_mlmodel(model)


@pytest.mark.parametrize("name", ["bad\nflavor", 'quo"te', "sp ace"])
def test_flavor_names_must_be_plain(tmp_path: Path, sklearn_model: Path, name: str) -> None:
    model = altered(sklearn_model, tmp_path / "m", lambda d: d["flavors"].update({name: {}}))
    with pytest.raises(ModelFormatError, match="not a plain name"):
        parse_mlmodel(model)


@pytest.mark.parametrize("field", ["run_id", "model_uuid", "model_id", "mlflow_version"])
@pytest.mark.parametrize("value", ["abc'; touch /tmp/x", "abc\ndef", 'a"b', "a`id`"])
def test_ids_with_quotes_or_newlines_refused(
    tmp_path: Path, sklearn_model: Path, field: str, value: str
) -> None:
    model = altered(sklearn_model, tmp_path / "m", lambda d: d.update({field: value}))
    with pytest.raises(ModelFormatError, match=field):
        parse_mlmodel(model)


def test_python_version_as_yaml_float(tmp_path: Path, sklearn_model: Path) -> None:
    model = copy_model(sklearn_model, tmp_path / "m")
    text, n = re.subn(r"python_version: \S+", "python_version: 3.10", (model / "MLmodel").read_text())
    assert n == 1
    (model / "MLmodel").write_text(text)
    with pytest.raises(ModelFormatError) as exc:
        parse_mlmodel(model)
    assert "3.1" in exc.value.what and exc.value.fix and "'3.10'" in exc.value.fix


@pytest.mark.parametrize("bad", ["-5", "'many'", "true"])
def test_model_size_bytes_must_be_an_integer(tmp_path: Path, sklearn_model: Path, bad: str) -> None:
    model = altered(
        sklearn_model, tmp_path / "m", lambda d: d.update(model_size_bytes=yaml.safe_load(bad))
    )
    with pytest.raises(ModelFormatError, match="model_size_bytes"):
        parse_mlmodel(model)


def test_metadata_must_be_a_mapping(tmp_path: Path, sklearn_model: Path) -> None:
    model = altered(sklearn_model, tmp_path / "m", lambda d: d.update(metadata=["x"]))
    with pytest.raises(ModelFormatError, match="'metadata' must be a mapping"):
        parse_mlmodel(model)


def test_env_of_wrong_type(tmp_path: Path, sklearn_model: Path) -> None:
    model = altered(
        sklearn_model, tmp_path / "m", lambda d: d["flavors"]["python_function"].update(env=["a"])
    )
    with pytest.raises(ModelFormatError, match="env' must be a file path or a mapping"):
        parse_mlmodel(model)


def test_env_with_unknown_manager(tmp_path: Path, sklearn_model: Path) -> None:
    model = altered(
        sklearn_model,
        tmp_path / "m",
        lambda d: d["flavors"]["python_function"].update(env={"docker": "Dockerfile"}),
    )
    with pytest.raises(ModelFormatError, match="unknown keys"):
        parse_mlmodel(model)


def test_unreadable_signature_json(tmp_path: Path, sklearn_model: Path) -> None:
    model = altered(
        sklearn_model,
        tmp_path / "m",
        lambda d: d["signature"].update(inputs='[{"type": "double", "name": "x"'),
    )
    with pytest.raises(ModelFormatError) as exc:
        parse_mlmodel(model)
    assert "signature.inputs" in exc.value.what and "not valid JSON" in exc.value.what


# --- unsafe paths -------------------------------------------------------------------------

_PATH_FIELDS = {
    "data": lambda d, v: d["flavors"]["python_function"].update(data=v),
    "code": lambda d, v: d["flavors"]["python_function"].update(code=v),
    "model_path": lambda d, v: d["flavors"]["python_function"].update(model_path=v),
    "env (legacy string)": lambda d, v: d["flavors"]["python_function"].update(env=v),
    "env.conda": lambda d, v: d["flavors"]["python_function"]["env"].update(conda=v),
    "env.virtualenv": lambda d, v: d["flavors"]["python_function"]["env"].update(virtualenv=v),
    "saved_input_example_info.artifact_path": lambda d, v: d["saved_input_example_info"].update(
        artifact_path=v
    ),
    "saved_input_example_info.serving_input_path": lambda d, v: d[
        "saved_input_example_info"
    ].update(serving_input_path=v),
    "python_model": lambda d, v: d["flavors"]["python_function"].update(python_model=v),
}


@pytest.mark.parametrize("field", sorted(_PATH_FIELDS))
def test_absolute_path_refused(tmp_path: Path, sklearn_model: Path, field: str) -> None:
    model = altered(sklearn_model, tmp_path / "m", lambda d: _PATH_FIELDS[field](d, "/etc/passwd"))
    with pytest.raises(UnsafePathError, match="absolute path"):
        parse_mlmodel(model)


@pytest.mark.parametrize("field", sorted(_PATH_FIELDS))
def test_dotdot_path_refused(tmp_path: Path, sklearn_model: Path, field: str) -> None:
    model = altered(
        sklearn_model, tmp_path / "m", lambda d: _PATH_FIELDS[field](d, "sub/../../secret")
    )
    with pytest.raises(UnsafePathError, match=r"contains '\.\.'"):
        parse_mlmodel(model)


@pytest.mark.parametrize("field", sorted(_PATH_FIELDS))
def test_symlink_outside_refused(tmp_path: Path, sklearn_model: Path, field: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("aws_secret_access_key=...")
    model = copy_model(sklearn_model, tmp_path / "m")
    os.symlink(outside, model / "link")
    altered_model = altered(model, tmp_path / "m2", lambda d: _PATH_FIELDS[field](d, "link/secret"))
    with pytest.raises(UnsafePathError) as exc:
        parse_mlmodel(altered_model)
    assert "outside the model directory" in exc.value.what


def test_symlink_inside_is_fine(tmp_path: Path, sklearn_model: Path) -> None:
    model = copy_model(sklearn_model, tmp_path / "m")
    os.symlink("model.skops", model / "alias.skops")
    m = parse_mlmodel(
        altered(
            model,
            tmp_path / "m2",
            lambda d: d["flavors"]["python_function"].update(model_path="alias.skops"),
        )
    )
    assert m.pyfunc is not None and m.pyfunc.model_path == "alias.skops"


def test_artifact_path_in_pyfunc_artifacts_checked(
    tmp_path: Path, custom_pyfunc_model: Path
) -> None:
    model = altered(
        custom_pyfunc_model,
        tmp_path / "m",
        lambda d: d["flavors"]["python_function"]["artifacts"]["n_file"].update(path="../../n.txt"),
    )
    with pytest.raises(UnsafePathError, match="artifacts.n_file.path"):
        parse_mlmodel(model)


def test_top_level_artifact_path_is_not_a_filesystem_path(
    tmp_path: Path, sklearn_model: Path
) -> None:
    """artifact_path is the run-relative location (may be a URI); it is never opened locally."""
    m = parse_mlmodel(
        altered(sklearn_model, tmp_path / "m", lambda d: d.update(artifact_path="s3://b/../x"))
    )
    assert m.artifact_path == "s3://b/../x"
    model = altered(
        sklearn_model, tmp_path / "m2", lambda d: d.update(artifact_path="model\nRUN evil")
    )
    with pytest.raises(ModelFormatError, match="control characters"):
        parse_mlmodel(model)


@pytest.mark.parametrize(
    "value", ["data/mo\ndel.pkl", "data/mo'del.pkl", 'data/"x"', "data/$(id)", "data\\model.pkl"]
)
def test_paths_with_newlines_or_quotes_refused(
    tmp_path: Path, sklearn_model: Path, value: str
) -> None:
    model = altered(
        sklearn_model, tmp_path / "m", lambda d: d["flavors"]["python_function"].update(data=value)
    )
    with pytest.raises(UnsafePathError, match="not allowed in a model path"):
        parse_mlmodel(model)


def test_mlmodel_round_trip_keeps_yaml_types(tmp_path: Path, params_model: Path) -> None:
    """read_mlmodel/write_mlmodel (test helper) must not change what we parse."""
    before = parse_mlmodel(params_model)
    after = parse_mlmodel(altered(params_model, tmp_path / "m", lambda d: None))
    assert before == after
    assert read_mlmodel(params_model)["model_uuid"] == before.model_uuid

"""The model set (deployer.serving.model_set): specs, the model repository, loading with
failures, lookups - in this process, with real MLflow-saved models."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from deployer.errors import ServingError, UsageError
from deployer.serving.model_set import (
    FAILED,
    READY,
    ModelSet,
    ModelSpec,
    check_name,
    model_specs,
    scan_repository,
    split_model_arg,
)
from deployer.serving.options import ServeOptions, parse_bytes


def test_split_model_arg_takes_a_name_only_when_it_looks_like_one() -> None:
    assert split_model_arg("churn=models:/churn/3") == ("churn", "models:/churn/3")
    assert split_model_arg("models:/churn/3") == (None, "models:/churn/3")
    assert split_model_arg("./a b=c") == (None, "./a b=c")  # "./a b" is no name
    assert split_model_arg("x=") == (None, "x=")


@pytest.mark.parametrize("bad", ["", "-x", "a/b", "a b", "é", "x" * 64, "../up", ".hidden"])
def test_bad_names_are_usage_errors(bad: str) -> None:
    with pytest.raises(UsageError) as info:
        check_name(bad, "here")
    assert info.value.where == "here" and info.value.fix


def test_repository_scan_names_sorted_and_skips_non_models(tmp_path: Path,
                                                         sklearn_model: Path) -> None:
    for name in ("b_model", "a.model-1"):
        shutil.copytree(sklearn_model, tmp_path / name)
    (tmp_path / "notes").mkdir()
    (tmp_path / "README.md").write_text("not a model")
    specs = scan_repository(tmp_path)
    assert [s.name for s in specs] == ["a.model-1", "b_model"]
    assert all(Path(s.path).is_dir() for s in specs)


def test_repository_symlink_escaping_is_refused(tmp_path: Path, sklearn_model: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "outside").symlink_to(sklearn_model, target_is_directory=True)
    with pytest.raises(UsageError) as info:
        scan_repository(repo)
    assert "outside the repository" in info.value.what


def test_repository_inner_symlink_and_bad_name(tmp_path: Path, sklearn_model: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(sklearn_model, repo / "real")
    (repo / "alias").symlink_to(repo / "real", target_is_directory=True)  # stays inside
    assert [s.name for s in scan_repository(repo)] == ["alias", "real"]
    shutil.copytree(sklearn_model, repo / "has space")
    with pytest.raises(UsageError):
        scan_repository(repo)


def test_missing_repository_and_empty_repository(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        scan_repository(tmp_path / "nope")
    options = ServeOptions(model_repository=str(tmp_path)).validate()
    with pytest.raises(UsageError) as info:
        model_specs(options)
    assert "no model to serve" in info.value.what


def test_options_validation_of_the_multi_model_options() -> None:
    for bad in (
        {"models": ("a=/x", "a=/y")},  # twice
        {"models": ("/x", "/y")},  # unnamed
        {"models": ("a=/x",), "default_model": "b"},
        {"models": ("a=/x", "b=/y"), "model_config": '{"k": 1}'},
        {"default_model": "bad name"},
        {"model_memory_limit": "lots"},
        {"model_memory_limit": "0"},
    ):
        with pytest.raises(UsageError) as info:
            ServeOptions(**bad).validate()  # type: ignore[arg-type]
        assert info.value.exit_code == 2 and info.value.fix, bad
    ok = ServeOptions(models=("a=/x", "b=/y"), default_model="b").validate()
    assert [s.name for s in model_specs(ok)] == ["a", "b"]


def test_parse_bytes_units() -> None:
    assert parse_bytes("2GiB", where="w") == 2 * 1024**3
    assert parse_bytes("1.5GB", where="w") == 1_500_000_000
    assert parse_bytes("512Mi", where="w") == 512 * 1024**2
    assert parse_bytes("1000", where="w") == 1000


def test_env_list_and_single_model_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"DEPLOYER_SERVE_MODELS": "a=/x, b=/y", "DEPLOYER_SERVE_DEFAULT_MODEL": "b"}
    opts = ServeOptions().with_env(env)
    assert opts.models == ("a=/x", "b=/y") and opts.default_model == "b"
    assert opts.multi_model
    assert ServeOptions().with_env({"SAGEMAKER_MULTI_MODEL": "true"}).sagemaker_multi_model
    single = ServeOptions(model_dir="/m", model_name="n")
    assert not single.multi_model and model_specs(single) == [ModelSpec("n", "/m", None)]


def test_load_keeps_failures_apart_and_looks_models_up(
    sklearn_model: Path, tensor_model: Path, load_context_fails_model: Path, tmp_path: Path
) -> None:
    specs = [ModelSpec("iris", str(sklearn_model)), ModelSpec("broken", str(load_context_fails_model)),
             ModelSpec("tensor", str(tensor_model))]
    models = ModelSet.load(specs, default="tensor")
    assert models.get("iris").state == READY and models.get("tensor").state == READY  # type: ignore[union-attr]
    broken = models.get("broken")
    assert broken is not None and broken.state == FAILED
    assert "load_context failure on purpose" in broken.error_message()
    assert models.default is models.get("tensor") and models.ready
    assert models.get("nope") is None and "'iris'" in models.unknown_message("nope")
    assert models.get("iris").core.model_name == "iris"  # type: ignore[union-attr]
    # every model failing is the server's failure, with every error
    with pytest.raises(ServingError) as info:
        ModelSet.load([ModelSpec("a", str(load_context_fails_model)),
                       ModelSpec("b", str(tmp_path / "missing"))])
    assert "a:" in info.value.what and "b:" in info.value.what
    # one model failing alone: its own error, as before multi-model serving
    with pytest.raises(ServingError) as single:
        ModelSet.load([ModelSpec("", str(tmp_path / "missing"))])
    assert "could not load the model" in single.value.what


def test_put_and_remove_replace_the_dict(sklearn_model: Path) -> None:
    models = ModelSet.load([ModelSpec("iris", str(sklearn_model))])
    before = models._entries
    entry = models.remove("iris")
    assert entry is not None and models.get("iris") is None and before is not models._entries
    models.put(entry)
    assert models.get("iris") is entry and models.multi


def test_namespace_options_work_too() -> None:
    """model_specs reads only the option names it documents (duck-typed for the image)."""
    ns = SimpleNamespace(multi_model=True, models=("a=/x",), model_repository=None,
                         sagemaker_multi_model=False, default_model=None, model_config=None)
    assert model_specs(ns) == [ModelSpec("a", "/x")]

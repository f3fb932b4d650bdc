"""Model-relative path checks (the guard every model path goes through)."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deployer.errors import UnsafePathError
from deployer.model.paths import check_relative_path, safe_model_path


@pytest.mark.parametrize(
    "value", ["model.pkl", "data/model.pkl", "./data/x", "a/b/c.txt", "with space.bin"]
)
def test_relative_paths_accepted(tmp_path: Path, value: str) -> None:
    assert check_relative_path(value, field="data", where="w") == PurePosixPath(value)
    resolved = safe_model_path(tmp_path, value, field="data", where="w")
    assert tmp_path.resolve() in resolved.parents


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("/etc/passwd", "absolute path"),
        ("C:/Windows/x", "absolute path"),
        ("..", "contains '..'"),
        ("a/../../b", "contains '..'"),
        ("", "empty path"),
        ("  ", "empty path"),
        ("a\nb", "not allowed"),
        ("a\x00b", "not allowed"),
        ("a'b", "not allowed"),
        ('a"b', "not allowed"),
        ("a`b`", "not allowed"),
        ("$HOME/x", "not allowed"),
        ("\\\\server\\share", "not allowed"),
    ],
)
def test_unsafe_text_refused(value: str, message: str) -> None:
    with pytest.raises(UnsafePathError) as exc:
        check_relative_path(value, field="data", where="MLmodel")
    assert message in exc.value.what
    assert exc.value.where == "MLmodel" and exc.value.fix


@pytest.mark.parametrize("value", [None, 3, ["a"], {"a": 1}])
def test_non_string_refused(value: object) -> None:
    with pytest.raises(UnsafePathError, match="must be a relative path string"):
        check_relative_path(value, field="code", where="w")


def test_symlink_escape_refused(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    os.symlink("/etc", model / "etc")
    with pytest.raises(UnsafePathError, match="outside the model directory"):
        safe_model_path(model, "etc/passwd", field="data", where="w")


def test_symlinked_model_dir_itself_is_fine(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "x").write_text("1")
    os.symlink(real, tmp_path / "link")
    assert (
        safe_model_path(tmp_path / "link", "x", field="data", where="w") == (real / "x").resolve()
    )


@given(st.text(max_size=40))
def test_accepted_paths_never_escape(value: str) -> None:
    """Whatever the text, an accepted path stays inside the directory and holds no quoting hazards."""
    root = Path("/srv/model-root-that-does-not-exist")
    try:
        resolved = safe_model_path(root, value, field="data", where="w")
    except UnsafePathError:
        return
    assert resolved == root or root in resolved.parents
    assert not any(ch in value for ch in "\n\r\x00'\"`$\\")

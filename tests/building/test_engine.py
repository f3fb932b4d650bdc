"""Build engines: detection of a BuildKit-capable CLI, both engines on tiny builds, error translation."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from deployer.building.engine import (
    BuildRequest,
    CliBuildKitEngine,
    SdkLegacyEngine,
    cli_has_buildkit,
    detect_engine,
)
from deployer.building.progress import Progress
from deployer.errors import BuildError
from deployer.targets.base import Target
from deployer.targets.registry import get_target


def test_progress_output_by_verbosity() -> None:
    lines = ["Step 1/3 : FROM x", "noise from pip", "#7 [deps 2/3] RUN build", "#7 DONE 1.0s"]
    for verbosity, expected in ((0, ["step: resolving", "Step 1/3 : FROM x", "#7 [deps 2/3] RUN build"]),
                                (1, ["step: resolving", *lines]), (-1, [])):
        out = io.StringIO()
        with Progress(verbosity=verbosity, stream=out) as progress:
            progress.step("step: resolving")
            for line in lines:
                progress.line(line)
        assert out.getvalue().splitlines() == expected
        assert progress.lines == len(lines)


def test_local_target_is_registered_like_any_plugin() -> None:
    target = get_target("local")
    assert isinstance(target, Target) and target.name == "local"


@pytest.mark.docker
def test_detection_prefers_a_real_buildkit_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    assert cli_has_buildkit("/usr/bin/docker")  # Debian's 20.10 CLI has BuildKit built in
    if os.path.exists("/usr/local/bin/docker"):
        # The 28.x CLI without buildx claims BuildKit but cannot build with it.
        assert not cli_has_buildkit("/usr/local/bin/docker")
    monkeypatch.delenv("DEPLOYER_BUILDKIT", raising=False)
    engine = detect_engine()
    assert isinstance(engine, CliBuildKitEngine) and engine.buildkit
    monkeypatch.setenv("DEPLOYER_BUILDKIT", "0")
    assert isinstance(detect_engine(), SdkLegacyEngine)
    monkeypatch.setenv("DEPLOYER_BUILDKIT", "1")
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("DEPLOYER_DOCKER_CLI", "/nonexistent/docker")
    if not os.path.exists("/usr/bin/docker"):
        with pytest.raises(BuildError, match="BuildKit was required"):
            detect_engine()


@pytest.mark.docker
@pytest.mark.parametrize("engine", ["legacy", "buildkit"])
def test_engines_build_and_translate_failures(engine: str, tmp_path: Path, base_image: str, docker_client) -> None:  # type: ignore[no-untyped-def]
    impl = SdkLegacyEngine(client=docker_client) if engine == "legacy" else CliBuildKitEngine(cli="/usr/bin/docker")
    ok = tmp_path / "ok"
    ok.mkdir()
    (ok / "Dockerfile").write_text(f"FROM {base_image}\nLABEL test.engine={engine}\n")
    lines: list[str] = []
    image_id = impl.build(BuildRequest(context=ok, tag=f"deployer-test/engine:{engine}"), lines.append)
    assert image_id.startswith("sha256:")
    assert docker_client.images.get(image_id).labels["test.engine"] == engine
    assert lines
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "Dockerfile").write_text(f"FROM {base_image}\nRUN echo about-to-fail && exit 7\n")
    with pytest.raises(BuildError) as err:
        impl.build(BuildRequest(context=bad, tag="deployer-test/engine:bad"), lambda _line: None)
    assert "about-to-fail" in err.value.format_message() or "exit" in err.value.format_message()

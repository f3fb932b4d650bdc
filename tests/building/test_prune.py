"""``deployer prune``: removes unused, old cache entries and environment images; keeps the rest."""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from deployer.building.prune import (
    DAY,
    CachedPath,
    EnvImage,
    Inventory,
    PrunePlan,
    env_images,
    execute_prune,
    plan_prune,
)
from deployer.building.wheelhouse import WheelStore
from deployer.cli import cli
from deployer.model.cache import ModelCache


def _age(path: Path, days: float) -> None:
    stamp = time.time() - days * DAY
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(p, (stamp, stamp))


def _caches(tmp_path: Path) -> tuple[Path, Path]:
    build, models = tmp_path / "build", tmp_path / "models"
    for name, days in (("a" * 64, 30), ("b" * 64, 1)):
        wheel = build / "wheels" / name / f"pkg_{name[0]}-1.0-py3-none-any.whl"
        wheel.parent.mkdir(parents=True)
        wheel.write_bytes(b"x" * 1000)
        _age(wheel.parent, days)
    (build / "locks").mkdir()
    for name, days in (("old", 3), ("fresh", 0.1)):
        (build / "locks" / f"{name}.lock").write_text("pkg==1.0\n")
        _age(build / "locks" / f"{name}.lock", days)
    for name, days in (("tmp-crashed", 2), ("tmp-running", 0.01)):
        (build / name).mkdir()
        _age(build / name, days)
    for key, days in (("k-old", 20), ("k-new", 2)):
        (models / key / "model").mkdir(parents=True)
        (models / key / "model" / "MLmodel").write_text("flavors: {}\n")
        (models / key / "source.json").write_text("{}")
        _age(models / key, days)
    return build, models


def test_cli_prunes_old_unused_cache_entries_and_keeps_the_rest(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    build, models = _caches(tmp_path)
    monkeypatch.setenv("DEPLOYER_BUILD_CACHE", str(build))
    monkeypatch.setenv("DEPLOYER_CACHE_DIR", str(models))
    runner = CliRunner()

    dry = runner.invoke(cli, ["prune", "--no-images", "--dry-run", "--output", "json"])
    assert dry.exit_code == 0, dry.output
    plan = json.loads(dry.stdout)
    gone = {Path(i["what"]).name for i in plan["remove"]}
    assert gone == {"a" * 64, "old.lock", "tmp-crashed", "k-old"}
    assert (build / "wheels" / ("a" * 64)).exists()  # dry run: nothing removed

    done = runner.invoke(cli, ["prune", "--no-images", "--older-than", "14"])
    assert done.exit_code == 0, done.output
    assert "removed 4 item(s)" in done.stdout
    assert not (build / "wheels" / ("a" * 64)).exists() and (build / "wheels" / ("b" * 64)).exists()
    assert not (build / "locks" / "old.lock").exists() and (build / "locks" / "fresh.lock").exists()
    assert not (build / "tmp-crashed").exists() and (build / "tmp-running").exists()
    assert not (models / "k-old").exists() and (models / "k-new" / "model" / "MLmodel").exists()

    # a shorter limit takes the recent wheel and model too; never the running build's directory
    runner.invoke(cli, ["prune", "--no-images", "--older-than", "0.5"])
    assert not (build / "wheels" / ("b" * 64)).exists() and not (models / "k-new").exists()
    assert (build / "tmp-running").exists() and (build / "locks" / "fresh.lock").exists()


def test_model_environments_are_judged_by_age(tmp_path: Path) -> None:
    from deployer.building.prune import cached_paths

    build, models = _caches(tmp_path)
    envs = build / "envs"
    for key, days in (("old-key", 30), ("new-key", 1), (".build-killed", 3)):
        (envs / key).mkdir(parents=True)
        (envs / key / "env.tar.gz").write_bytes(b"x" * 100)
        _age(envs / key, days)
    runtime = build / "runtime" / "deployer-runtime-0123.zip"
    runtime.parent.mkdir(parents=True)
    runtime.write_bytes(b"PK")
    _age(runtime, 30)
    plan = plan_prune(Inventory(cached=tuple(cached_paths(build, models))), older_than_days=14)
    gone = {(i.kind, Path(i.what).name) for i in plan.remove}
    assert {("host-env", "old-key"), ("tmp", ".build-killed"), ("host-env", runtime.name)} <= gone
    assert ("host-env", "new-key") in {(i.kind, Path(i.what).name) for i in plan.keep}


def test_a_cache_hit_counts_as_use(tmp_path: Path) -> None:
    build, models = _caches(tmp_path)
    assert WheelStore(build).lookup("a" * 64) is not None
    assert ModelCache.at(models).lookup("k-old") is not None
    from deployer.building.prune import cached_paths

    plan = plan_prune(Inventory(cached=tuple(cached_paths(build, models))), older_than_days=14)
    gone = {Path(i.what).name for i in plan.remove}
    assert "a" * 64 not in gone and "k-old" not in gone


def test_plan_keeps_environment_images_that_other_images_are_built_on() -> None:
    now = time.time()
    used = EnvImage("deployer-env:used", "sha256:1", now - 40 * DAY, 500, ("l1", "l2"))
    unused_old = EnvImage("deployer-env:old", "sha256:2", now - 40 * DAY, 300, ("l1", "l3"))
    unused_new = EnvImage("deployer-env:new", "sha256:3", now - 1 * DAY, 300, ("l1", "l4"))
    inv = Inventory(env_images=(used, unused_old, unused_new),
                    other_layers=(("l1",), ("l1", "l2", "model")), cached=(), now=now)
    plan = plan_prune(inv, older_than_days=14)
    assert [i.what for i in plan.remove] == ["deployer-env:old"]
    reasons = {i.what: i.reason for i in plan.keep}
    assert "built on it" in reasons["deployer-env:used"] and "old" in reasons["deployer-env:new"]
    # a lock/tmp item is judged by its own rule, whatever --older-than says
    tmp = CachedPath("tmp", Path("/nowhere/tmp-x"), now - 60, 0)
    assert plan_prune(Inventory(cached=(tmp,), now=now), older_than_days=0).remove == ()


def test_staging_tags_of_killed_verifications_are_debris() -> None:
    from deployer.building.prune import STAGING_REPOSITORY
    from deployer.building.verify import STAGING_REPO

    assert STAGING_REPOSITORY == STAGING_REPO
    now = time.time()
    old = EnvImage(f"{STAGING_REPO}:abc-1234", "sha256:9", now - 2 * 3600, 100, ("l1", "l2"))
    fresh = EnvImage(f"{STAGING_REPO}:def-5678", "sha256:8", now - 60, 100, ("l1", "l2"))
    # both share their layers with a model image (the verified one): that does not keep them
    plan = plan_prune(Inventory(env_images=(old, fresh), other_layers=(("l1", "l2"),), now=now),
                      older_than_days=14)
    assert [(i.kind, i.what) for i in plan.remove] == [("staging-image", old.tag)]
    assert [(i.kind, i.what) for i in plan.keep] == [("staging-image", fresh.tag)]
    assert "killed during its verification" in plan.remove[0].reason


@pytest.mark.docker
def test_real_engine_staging_tag_is_found_and_removed(docker_client, base_image: str) -> None:  # type: ignore[no-untyped-def]
    from deployer.building.verify import STAGING_REPO

    tag = f"{STAGING_REPO}:prune-test-{uuid.uuid4().hex[:8]}"
    docker_client.images.build(fileobj=io.BytesIO(f"FROM {base_image}\nLABEL x={uuid.uuid4().hex}\n".encode()),
                               tag=tag, rm=True)
    try:
        ours, others = env_images(docker_client)
        mine = [img for img in ours if img.tag == tag]
        assert mine, "the staging tag must be in the inventory"
        plan = plan_prune(Inventory(env_images=tuple(mine), other_layers=tuple(others),
                                    now=mine[0].created + 7200), older_than_days=14)
        assert [i.what for i in plan.remove] == [tag]
        assert execute_prune(plan, docker_client) == []
        assert not any(tag in image.tags for image in docker_client.images.list())
    finally:
        with contextlib.suppress(Exception):
            docker_client.images.remove(tag, force=True)


@pytest.mark.docker
def test_real_engine_env_image_removed_only_once_nothing_is_built_on_it(docker_client,  # type: ignore[no-untyped-def]
                                                                       base_image: str) -> None:
    """A real deployer-env image and a child image: kept while the child exists, then removed.
    Only this test's own image is executed from the plan (other tests' caches stay)."""
    tag = f"deployer-env:prune-test-{uuid.uuid4().hex[:8]}"
    child = f"deployer-test/prune-child:{uuid.uuid4().hex[:8]}"
    nonce = uuid.uuid4().hex

    def build(dockerfile: str, t: str) -> None:
        docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=t, rm=True)

    build(f"FROM {base_image}\nRUN echo {nonce} > /env-marker\n", tag)
    build(f"FROM {tag}\nRUN echo child > /child-marker\n", child)
    try:
        ours, others = env_images(docker_client)
        mine = [i for i in ours if i.tag == tag]
        assert len(mine) == 1
        plan = plan_prune(Inventory(env_images=tuple(mine), other_layers=tuple(others)), older_than_days=0)
        assert plan.remove == () and "built on it" in plan.keep[0].reason

        docker_client.images.remove(child)
        ours, others = env_images(docker_client)
        mine = [i for i in ours if i.tag == tag]
        plan = plan_prune(Inventory(env_images=tuple(mine), other_layers=tuple(others)), older_than_days=0)
        assert [i.what for i in plan.remove] == [tag]
        assert execute_prune(PrunePlan(plan.remove, ()), docker_client) == []
        assert tag not in {t for img in docker_client.images.list() for t in img.tags}
    finally:
        for ref in (child, tag):
            try:
                docker_client.images.remove(ref, force=True)
            except Exception:  # noqa: BLE001 - already gone
                pass

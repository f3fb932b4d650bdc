"""``execute_build``: hand a written context to an engine, then describe the image it made.

Thin on purpose: every decision was made by :func:`~deployer.building.plan.plan_build` and
written by :func:`~deployer.building.context.write_context`; this only builds and measures
(size, layers, size over the base) so the CLI can print a summary and tests can assert on it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from deployer.atomic import atomic_output
from deployer.building.context import (
    BuildContext,
    dockerfile_context,
    resolve_lock,
    uv_sha256_of,
    write_context,
)
from deployer.building.engine import BuildEngine, BuildRequest, detect_engine, docker_client
from deployer.building.plan import BuildPlan
from deployer.building.platform_check import check_build_platform
from deployer.building.verify import (
    SKIPPED,
    VerifyResult,
    label_image,
    recorded,
    staging_tag,
    verify_image,
)
from deployer.building.wheelhouse import Resolver, default_cache_root
from deployer.errors import BuildError
from deployer.redact import redact_text
from deployer.rendering.render import render_template

LineSink = Callable[[str], None]
log = logging.getLogger("deployer")


@dataclass(frozen=True)
class ImageInfo:
    image_id: str
    size: int
    layers: tuple[str, ...]
    labels: dict[str, str]

    @classmethod
    def inspect(cls, client: Any, ref: str) -> ImageInfo:
        try:
            image = client.images.get(ref)
        except Exception as exc:  # noqa: BLE001 - docker.errors.ImageNotFound / APIError
            raise BuildError(
                f"image {ref!r} not found in the engine", fix="build it first"
            ) from exc
        attrs = image.attrs
        return cls(
            image_id=image.id,
            size=int(attrs.get("Size") or 0),
            layers=tuple(attrs.get("RootFS", {}).get("Layers") or ()),
            labels=dict(attrs.get("Config", {}).get("Labels") or {}),
        )


@dataclass(frozen=True)
class BuildResult:
    image: str  # the tag
    digest: str  # image ID (config digest); a registry digest exists only after a push
    size: int
    size_over_base: int
    layers: int
    new_layers: int  # layers not in the base image
    seconds: float
    engine: str
    lock_digest: str | None
    skipped: bool = False
    verification: VerifyResult | None = None  # None: an image built outside build_model_image

    @property
    def tag(self) -> str:
        return self.image

    def to_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "digest": self.digest,
            "size": self.size,
            "size_over_base": self.size_over_base,
            "layers": self.layers,
            "new_layers": self.new_layers,
            "seconds": round(self.seconds, 2),
            "engine": self.engine,
            "lock_digest": self.lock_digest,
            "skipped": self.skipped,
            "verification": self.verification.to_dict() if self.verification else None,
        }


def execute_build(
    plan: BuildPlan,
    context: BuildContext | None = None,
    engine: BuildEngine | None = None,
    *,
    on_line: LineSink | None = None,
    client: Any = None,
    resolver: Resolver | None = None,
    started: float | None = None,
    nocache: bool = False,
) -> BuildResult:
    """Build ``plan``. ``context``: an already written context (else a temporary one is written
    for ``engine``); ``engine``: default :func:`detect_engine`; ``started``: a monotonic start
    time so the reported seconds can include resolution done before this call."""
    t0 = started if started is not None else time.monotonic()
    engine = engine or detect_engine()
    client = client or docker_client()
    build_platform = check_build_platform(client, engine, plan.platform.docker_platform)
    if context is None:
        with tempfile.TemporaryDirectory(prefix="deployer-context-") as tmp:
            ctx = write_context(
                plan,
                Path(tmp) / "context",
                buildkit=engine.buildkit,
                resolver=resolver,
                on_line=on_line,
            )
            return execute_build(
                ctx.plan, ctx, engine, on_line=on_line, client=client, started=t0, nocache=nocache
            )
    plan = context.plan
    if engine.buildkit != context.buildkit:
        raise BuildError(
            "the context was written for "
            f"{'BuildKit' if context.buildkit else 'the classic builder'} "
            f"but the engine is {engine.name}",
            fix="write the context with buildkit=engine.buildkit",
        )
    try:
        image_id = _build(engine, context, plan, nocache, on_line, build_platform)
    except BuildError as exc:
        if _base_info(client, plan.base_image) is None:
            raise BuildError(
                f"{exc.what}\n(the base image {plan.base_image} is not in the local engine, and "
                "pulling it failed)",
                fix="pass --base-image with an image you have (`docker images`), e.g. one made "
                "from "
                "Debian packages by docker/base-image.sh, or `docker pull` it first",
            ) from exc
        raise
    info = ImageInfo.inspect(client, image_id)
    base = _base_info(client, plan.base_image)
    base_layers = set(base.layers) if base else set()
    return BuildResult(
        image=plan.tag,
        digest=info.image_id,
        size=info.size,
        size_over_base=info.size - (base.size if base else 0),
        layers=len(info.layers),
        new_layers=sum(1 for layer in info.layers if layer not in base_layers),
        seconds=time.monotonic() - t0,
        engine=engine.name,
        lock_digest=plan.lock.digest if plan.lock else None,
    )


def _build(
    engine: BuildEngine,
    context: BuildContext,
    plan: BuildPlan,
    nocache: bool,
    on_line: LineSink | None,
    platform: str | None,
) -> str:
    # ``platform``: from check_build_platform -- only for a foreign architecture (buildx + QEMU
    # checked); native builds omit it so locally imported base images without platform
    # metadata still resolve.
    return engine.build(
        BuildRequest(context=context.path, tag=plan.tag, nocache=nocache, platform=platform),
        on_line or (lambda _line: None),
    )


def _pull(client: Any, ref: str) -> ImageInfo:
    """Pull a missing base image once; a failure becomes an actionable BuildError."""
    log.info("pulling the base image %s", ref)
    try:
        client.images.pull(ref)
    except Exception as exc:  # noqa: BLE001 - docker.errors.* / requests errors
        raise BuildError(
            f"the base image {ref} is not in the local engine and could not be pulled: {exc}",
            fix="pass --base-image with an image you have (`docker images`), e.g. one made from "
            "Debian packages by docker/base-image.sh, or `docker pull` it first",
        ) from exc
    return ImageInfo.inspect(client, ref)


def check_base_python(client: Any, plan: BuildPlan, cache_root: Path | None = None) -> None:
    """The base image must have ``python3`` X.Y of the plan (the venv is made from it).

    _build_venv.py checks the same inside the build, but only after every wheel was downloaded
    and sent, so it is checked up front by running ``python3`` in the base image (pulled once
    if missing). The answer is cached per image ID (``base-python.json`` in the build cache):
    an image ID names immutable content, so each base costs one ``docker run``, ever.
    """
    want = plan.platform.python
    if plan.gpu:
        fix = (
            f"pass --base-image with a CUDA image that has Python {want} as python3 (for example "
            "one built "
            f"FROM {plan.base_image} that installs python{want} and python{want}-venv)"
        )
    else:
        fix = (
            f"pass --base-image with an image whose python3 is {want} (e.g. python:{want}-slim), "
            "or "
            "--python X.Y if the model really runs on the base image's Python"
        )
    try:
        base = _base_info(client, plan.base_image) or _pull(client, plan.base_image)
    except BuildError as exc:  # CUDA bases are the likely miss: say which one works
        raise BuildError(exc.what, where="--base-image", fix=fix if plan.gpu else exc.fix) from exc
    cache = (cache_root or default_cache_root()) / "base-python.json"
    known = _read_json(cache)
    have = known.get(base.image_id)
    if not isinstance(have, str):
        have = _run_base_python(client, plan.base_image, base.image_id, want, fix)
        _write_json(cache, {**known, base.image_id: have})  # only a real answer is cached
    if have != want:
        raise BuildError(
            f"the base image {plan.base_image} has Python {have}, the model needs Python {want}",
            where="--base-image",
            fix=fix,
        )


# What runc / the engine say when the command itself is not in the image.
_NO_EXECUTABLE = re.compile(r"executable file not found|no such file or directory", re.IGNORECASE)


def _run_base_python(client: Any, ref: str, image_id: str, want: str, fix: str) -> str:
    """``python3 -c 'print X.Y'`` in the base image. Three failures, told apart because each
    has another fix: the image has no python3; its python3 runs but fails; the engine cannot
    run a container at all (cgroup/runtime errors, engine gone): then the engine's own
    message is the news, not the image."""
    import docker.errors

    code = "import sys; print('%d.%d' % sys.version_info[:2])"
    container = None
    try:
        # create + start + wait rather than containers.run(remove=True), which leaves the
        # created container behind when the engine fails to start it
        container = client.containers.create(
            image_id, ["python3", "-c", code], entrypoint=[], network_disabled=True
        )
        container.start()
        status = int(container.wait(timeout=120).get("StatusCode", -1))
        out = container.logs(stdout=True, stderr=True)
    except docker.errors.APIError as exc:  # the engine refused to create or start the container
        engine = redact_text(str(exc.explanation or exc)).strip()
        if _NO_EXECUTABLE.search(engine) and "python3" in engine:
            raise BuildError(
                f"the base image {ref} has no python3 (the model needs Python {want})",
                where="--base-image",
                fix=fix,
            ) from None
        raise BuildError(
            f"the Docker engine could not run a container from the base image {ref}: {engine}",
            where="Docker engine",
            fix="this is the engine's own error, not the image's: fix the engine (its log, "
            "`docker run --rm IMAGE true` reproduces it) and build again",
        ) from None
    except Exception as exc:  # noqa: BLE001 - requests/docker connection errors: engine unreachable
        raise BuildError(
            f"lost the Docker engine while checking the base image {ref}: {redact_text(str(exc))}",
            where="Docker engine",
            fix="check that the engine runs (docker info) and build again",
        ) from None
    finally:
        if container is not None:
            with contextlib.suppress(Exception):
                container.remove(force=True)
    if status != 0:  # python3 started and failed
        tail = _last_line(out)
        raise BuildError(
            f"python3 in the base image {ref} exits with code {status}"
            + (f": {tail}" if tail else "")
            + f" (the model needs Python {want})",
            where="--base-image",
            fix=fix,
        )
    text = out.decode(errors="replace") if isinstance(out, bytes) else str(out)
    found = re.findall(r"^(\d+\.\d+)\s*$", text, flags=re.MULTILINE)
    if not found:
        raise BuildError(
            f"python3 in the base image {ref} did not print its version (it printed "
            f"{_last_line(text)!r}; the model needs Python {want})",
            where="--base-image",
            fix=fix,
        )
    return str(found[-1])


def _last_line(data: Any) -> str:
    text = data.decode(errors="replace") if isinstance(data, bytes) else str(data or "")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return redact_text(lines[-1])[:300] if lines else ""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomic (write + rename): concurrent builds never read a torn file. Best effort: the
    cache only saves a ``docker run``."""
    with contextlib.suppress(OSError), atomic_output(path, prefix=".base-python-") as tmp:
        tmp.write_text(json.dumps(data))


def _base_info(client: Any, ref: str) -> ImageInfo | None:
    try:
        return ImageInfo.inspect(client, ref)
    except BuildError:
        return None


def existing_build(client: Any, tag: str, fingerprint: str) -> ImageInfo | None:
    """The image already tagged ``tag`` if it was built from the same plan fingerprint."""
    try:
        info = ImageInfo.inspect(client, tag)
    except BuildError:
        return None
    return info if info.labels.get("io.deployer.build.fingerprint") == fingerprint else None


def build_model_image(
    model_uri: Any,
    options: Any = None,
    *,
    engine: BuildEngine | None = None,
    if_needed: bool = False,
    step: LineSink | None = None,
    on_line: LineSink | None = None,
    client: Any = None,
    resolver: Resolver | None = None,
    nocache: bool = False,
    split: bool = True,
) -> tuple[BuildPlan, BuildResult]:
    """Load, plan and build a model image in one call (what the CLI and targets use).

    ``if_needed``: when an image with the plan's tag and fingerprint label exists (same model,
    dependencies, runtime and options), return it without building (``skipped=True``).

    ``split`` (default): build in two parts. Part 1 is the base image plus the Python
    environment, tagged ``deployer-env:<digest of what it contains>``; it is built only when
    no image with that tag exists, so a model with the same dependencies skips it entirely --
    the wheels are not even sent to the engine again. Part 2 adds the runtime and the model.
    The layers are exactly those of the single-Dockerfile build (``deployer generate``).

    Verification (on unless ``options.verify`` is off; :mod:`deployer.building.verify`): the
    image is built under a staging tag, run once offline and scored; only then does a
    LABEL-only build recording the check get ``plan.tag``. A failure raises BuildError and the
    requested tag is never applied. An existing image (``if_needed``) whose labels say it
    passed is not verified again; one built with --no-verify is verified now.
    """
    from deployer.building.sources import plan_source

    t0 = time.monotonic()
    say = step or (lambda _line: None)
    plan = plan_source(model_uri, options)
    client = client or docker_client()
    if if_needed:
        found = existing_build(client, plan.tag, plan.fingerprint)
        if found is not None:
            say(f"image {plan.tag} is up to date (same model, dependencies and options)")
            verification: VerifyResult | None = None
            if plan.verify is not None and recorded(found.labels) != "passed":
                verification = verify_image(client, found.image_id, plan, say=say, shown=plan.tag)
                label_image(engine or detect_engine(), plan.tag, plan.tag, verification.labels())
                found = ImageInfo.inspect(client, plan.tag)
            base = _base_info(client, plan.base_image)
            base_layers = set(base.layers) if base else set()
            return plan, BuildResult(
                image=plan.tag,
                digest=found.image_id,
                size=found.size,
                size_over_base=found.size - (base.size if base else 0),
                layers=len(found.layers),
                new_layers=sum(1 for x in found.layers if x not in base_layers),
                seconds=time.monotonic() - t0,
                engine="(existing image)",
                lock_digest=found.labels.get("io.deployer.lock.digest"),
                skipped=True,
                verification=verification or _recorded_result(found.labels),
            )
    engine = engine or detect_engine()
    # Before anything is resolved or downloaded: can this engine build the platform at all?
    build_platform = check_build_platform(client, engine, plan.platform.docker_platform)
    if plan.env_kind == "virtualenv" and (build_platform is None or plan.gpu):
        check_base_python(client, plan)  # native bases only: a foreign one would run under QEMU
    resolver = resolver or Resolver()
    say(
        f"building {plan.tag} with {engine.name}"
        + ("" if plan.verify else " (not verified: --no-verify)")
    )
    requested = plan.tag
    if plan.verify is not None:  # build under a staging tag: the requested one only once verified
        plan = replace(plan, tag=staging_tag(plan))
    with tempfile.TemporaryDirectory(prefix="deployer-context-") as tmp:
        if not split or plan.env_kind != "virtualenv":
            ctx = write_context(
                plan,
                Path(tmp) / "context",
                buildkit=engine.buildkit,
                resolver=resolver,
                on_line=say,
            )
            result = execute_build(
                ctx.plan, ctx, engine, on_line=on_line, client=client, started=t0, nocache=nocache
            )
            return _verified(ctx.plan, result, requested, engine, client, build_platform, say, t0)
        plan = plan.with_lock(resolve_lock(plan, resolver, say))
        deps_tag = environment_image_tag(client, plan, engine.buildkit)
        if nocache or _base_info(client, deps_tag) is None:
            say(f"building the Python environment image {deps_tag}")
            deps_ctx = write_context(
                plan,
                Path(tmp) / "deps",
                buildkit=engine.buildkit,
                resolver=resolver,
                on_line=say,
                part="deps",
            )
            _build(engine, deps_ctx, replace(plan, tag=deps_tag), nocache, on_line, build_platform)
        else:
            say(f"reusing the Python environment image {deps_tag}")
        ctx = write_context(
            plan,
            Path(tmp) / "model",
            buildkit=engine.buildkit,
            resolver=resolver,
            on_line=say,
            part="model",
            deps_image=deps_tag,
        )
        result = execute_build(
            ctx.plan, ctx, engine, on_line=on_line, client=client, started=t0, nocache=nocache
        )
    return _verified(ctx.plan, result, requested, engine, client, build_platform, say, t0)


def _verified(
    plan: BuildPlan,
    result: BuildResult,
    requested: str,
    engine: BuildEngine,
    client: Any,
    platform: str | None,
    say: LineSink,
    t0: float,
) -> tuple[BuildPlan, BuildResult]:
    """Verify the image built under ``plan.tag`` (a staging tag) and give it the ``requested``
    tag with the outcome in its labels; --no-verify builds carry their ``skipped`` label already."""
    if plan.verify is None:
        return plan, replace(result, verification=SKIPPED)
    staged = plan.tag
    try:
        verification = verify_image(client, result.digest, plan, say=say, shown=requested)
        image_id = label_image(engine, staged, requested, verification.labels(), platform)
    finally:
        with contextlib.suppress(Exception):
            client.images.remove(staged, noprune=True)
    return replace(plan, tag=requested), replace(
        result,
        image=requested,
        digest=image_id,
        verification=verification,
        seconds=time.monotonic() - t0,
    )


def _recorded_result(labels: dict[str, str]) -> VerifyResult | None:
    status = recorded(labels)
    if status is None:
        return None
    from deployer.building.verify import LABEL

    return VerifyResult(
        status=status,
        route=labels.get(f"{LABEL}.route", ""),
        http_status=int(labels[f"{LABEL}.http-status"])
        if labels.get(f"{LABEL}.http-status")
        else None,
        payload_digest=labels.get(f"{LABEL}.payload", "").rpartition(" ")[2],
        payload_source=labels.get(f"{LABEL}.payload", "").rpartition(" ")[0],
        grpc=labels.get(f"{LABEL}.grpc", ""),
        models=labels.get(f"{LABEL}.models", ""),
    )


def environment_image_tag(client: Any, plan: BuildPlan, buildkit: bool) -> str:
    """``deployer-env:<hash>`` of everything part 1 is made of: the base image's ID (not its
    tag, which can move), the rendered part-1 Dockerfile (user, installer arguments, uv hash),
    the installer script and the exact lock."""
    base = _base_info(client, plan.base_image) or _pull(client, plan.base_image)
    assert plan.lock is not None
    dockerfile = render_template(
        "Dockerfile.j2",
        **dockerfile_context(
            plan, buildkit=buildkit, uv_sha256=uv_sha256_of(plan.lock), part="deps"
        ),
    )
    h = hashlib.sha256()
    for part in (
        base.image_id,
        dockerfile,
        plan.lock.canonical_text(),
        Path(__file__).with_name("_build_venv.py").read_text(),
    ):
        h.update(part.encode() + b"\0")
    return f"deployer-env:{h.hexdigest()[:20]}"

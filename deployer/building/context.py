"""``write_context``: carry out a :class:`BuildPlan` as a directory ``docker build`` accepts.

Layout of a context (everything the Dockerfile uses, nothing else)::

    Dockerfile                      rendered from templates/Dockerfile.j2
    .dockerignore                   rendered from templates/dockerignore.j2
    deployer-plan.json              the plan, for humans and `deployer build --dry-run` parity
    deployer-build/build_venv.py    offline installer run in the build stage
    deployer-build/requirements.lock    the pinned, hashed dependency set
    wheels/                         every locked wheel (downloaded on the host)
    runtime/deployer/...            deployer's serving modules
    runtime/bin/serve               the entry point (templates/serve.j2)
    model/                          the model files (last layer)
    models/<name>/                  a multi-model image's models instead (one layer each)
    create_service.sh               Azure ML targets only (templates/create_service.sh.j2)

Resolving and downloading happen here (on the host, see :mod:`deployer.building.wheelhouse`).
Every file gets a fixed mtime and normalized permissions, so the same inputs give the same
layer bytes whatever machine or checkout they come from.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from deployer import __version__
from deployer.building.contracts import contract
from deployer.building.dependencies import ImageRequirements
from deployer.building.plan import (
    BUILD_DIR,
    CONDA_PKGS_DIR,
    MODEL_DIR,
    MODEL_REPOSITORY,
    RUNTIME_DIR,
    USER_HOME,
    USER_NAME,
    USER_UID,
    WHEELS_DIR,
    BuildPlan,
)
from deployer.building.wheelhouse import Resolver, link_wheels
from deployer.environment.lock import Lock, TargetPlatform
from deployer.errors import BuildError, EnvironmentSpecError, UsageError
from deployer.model.files import copy_model
from deployer.rendering.render import render_template
from deployer.resources import package_dir

#: 1980-01-01, the oldest time zip (and so wheels) can store; any fixed value would do.
FIXED_MTIME = 315532800
PLAN_FILE = "deployer-plan.json"
LOCK_NAME = "requirements.lock"
#: Multi-model images: each model's files under models/<name>/ of the context.
MODELS_CONTEXT_DIR = "models"
LineSink = Callable[[str], None]
log = logging.getLogger("deployer")


@dataclass(frozen=True)
class BuildContext:
    path: Path
    plan: BuildPlan  # with the lock filled in
    buildkit: bool
    dockerfile: str
    wheel_count: int
    wheel_bytes: int


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    os.chmod(path, mode)


def _copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    os.chmod(dest, 0o755 if os.access(src, os.X_OK) else 0o644)


def _normalize_tree(root: Path) -> None:
    """Fixed mtimes and permissions for everything under ``root`` (deepest first)."""
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            p = Path(dirpath) / name
            os.utime(p, (FIXED_MTIME, FIXED_MTIME), follow_symlinks=False)
        for name in dirnames:
            p = Path(dirpath) / name
            os.chmod(p, 0o755)
            os.utime(p, (FIXED_MTIME, FIXED_MTIME))
    os.utime(root, (FIXED_MTIME, FIXED_MTIME))


def _prepare_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists():
        if not out_dir.is_dir():
            raise UsageError(
                "the output path exists and is not a directory",
                where=str(out_dir),
                fix="choose a new directory for the build context",
            )
        if any(out_dir.iterdir()):
            if not overwrite:
                raise UsageError(
                    "the output directory is not empty",
                    where=str(out_dir),
                    fix="choose an empty or new directory (or pass --force to replace it)",
                )
            shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)


def dockerfile_context(
    plan: BuildPlan,
    *,
    buildkit: bool,
    uv_sha256: str,
    part: str = "full",
    deps_image: str | None = None,
) -> dict[str, object]:
    """The variables templates/Dockerfile.j2 renders (exposed for the golden-file tests)."""
    env_prefix = plan.env_prefix
    build_env = [
        plan.python if plan.env_kind == "conda" else "python3",
        f"{BUILD_DIR}/build_venv.py",
        "--wheels",
        WHEELS_DIR,
        "--lock",
        f"{BUILD_DIR}/{LOCK_NAME}",
        "--prefix",
        env_prefix or "/",
        "--python-version",
        plan.platform.python,
    ]
    if uv_sha256:
        build_env += ["--uv-sha256", uv_sha256]
    if plan.env_kind == "conda":
        build_env.append("--no-venv")
    # The runtime stage compiles with the interpreter the image will run: the base image's
    # python3 (which the venv links to), or the conda environment's own Python.
    compile_python = plan.python if plan.env_kind == "conda" else "python3"
    create_user = (
        []
        if plan.user == "root"
        else [
            "useradd",
            "--uid",
            str(USER_UID),
            "--user-group",
            "--no-log-init",
            "--create-home",
            "--home-dir",
            USER_HOME,
            "--shell",
            "/usr/sbin/nologin",
            USER_NAME,
        ]
    )
    path_prefix = ":".join(
        p for p in (f"{env_prefix}/bin" if env_prefix else "", f"{RUNTIME_DIR}/bin") if p
    )
    deps_labels = [
        ("io.deployer.env.lock", plan.lock.digest if plan.lock else ""),
        ("io.deployer.env.base", plan.base_image),
    ]
    return {
        "part": part,
        "deps_image": deps_image or "",
        "deps_labels": [(k, v) for k, v in deps_labels if v],
        "deployer_version": __version__,
        # Part 1 is shared by every model with the same environment: nothing model-specific
        # may appear in it (its text is part of the environment image's tag).
        "model_name": plan.model_name if part != "deps" else "any model with this environment",
        "source_uri": plan.model_uri if part != "deps" else "(shared environment image)",
        "tag": plan.tag if part != "deps" else "deployer-env",
        "buildkit": buildkit,
        "env_kind": plan.env_kind,
        "base_image": plan.base_image,
        "micromamba_image": plan.micromamba_image,
        "runtime_from": (deps_image if part == "model" else "deps")
        if plan.env_kind == "conda"
        else plan.base_image,
        "wheels_dir": WHEELS_DIR,
        "build_dir": BUILD_DIR,
        "conda_pkgs_dir": CONDA_PKGS_DIR,
        "build_env_argv": build_env,
        "conda_create_argv": [
            "micromamba",
            "create",
            "--yes",
            "--offline",
            "--prefix",
            env_prefix or "/",
            "--file",
            f"{BUILD_DIR}/conda-explicit.txt",
        ],
        "compile_argv": [
            compile_python,
            "-m",
            "compileall",
            "-q",
            "--invalidation-mode",
            "unchecked-hash",
            RUNTIME_DIR,
        ],
        "create_user_argv": create_user,
        "os_packages_argv": plan.os_packages.apt_argv() if plan.os_packages else [],
        "env_prefix": env_prefix or "/",
        "runtime_dir": RUNTIME_DIR,
        "model_dir": MODEL_DIR,
        "models": [(f"{MODELS_CONTEXT_DIR}/{m.name}", m.image_path) for m in plan.models],
        "path_prefix": path_prefix,
        "env": list(plan.env),
        "user": plan.user,
        "workdir": "/root" if plan.user == "root" else USER_HOME,
        "port": plan.port,
        "grpc_port": plan.grpc_port or 0,
        "health_interval": 10,
        "health_timeout": 5,
        "health_start": 120,
        "healthcheck_argv": list(plan.healthcheck),
        "entrypoint": list(plan.entrypoint),
        "cmd": list(plan.cmd),
        "labels": list(plan.labels),
    }


def serve_context(plan: BuildPlan) -> dict[str, object]:
    return {
        "deployer_version": __version__,
        "target": plan.target,
        "server": contract(plan.target).server,
        "port": plan.port,
        "model_dir": MODEL_DIR,
        "model_repository": MODEL_REPOSITORY if plan.models else "",
        "python": plan.python,
        "azmlinfsrv": f"{plan.env_prefix}/bin/azmlinfsrv" if plan.env_prefix else "azmlinfsrv",
        "score_py": f"{RUNTIME_DIR}/score.py",
    }


def create_service_context(
    plan: BuildPlan,
    *,
    endpoint_name: str | None = None,
    deployment_name: str = "blue",
    instance_type: str = "Standard_DS3_v2",
    instance_count: int = 1,
) -> dict[str, object]:
    name = endpoint_name or (
        plan.model_name.replace("_", "-").replace(".", "-")[:28].strip("-") + "-ep"
    )
    if not name[:1].isalpha():
        name = "m-" + name
    return {
        "deployer_version": __version__,
        "image": plan.tag,
        "endpoint_name": name[:32].rstrip("-"),
        "deployment_name": deployment_name,
        "instance_type": instance_type,
        "instance_count": instance_count,
        "port": plan.port,
        "request_timeout_ms": 60000,
        "initial_delay": 30,
    }


def render_create_service(plan: BuildPlan, **kwargs: object) -> str:
    return render_template("create_service.sh.j2", **create_service_context(plan, **kwargs))  # type: ignore[arg-type]


def resolve_lock(plan: BuildPlan, resolver: Resolver, say: LineSink) -> Lock:
    """The plan's lock (``--lock``, cached or freshly resolved), with its build tools."""
    lock = plan.lock
    if lock is None:
        say(
            f"resolving dependencies for {plan.platform.docker_platform}, Python "
            f"{plan.platform.python} "
            "(on this host)"
        )
        lock = resolver.lock(
            plan.requirements,
            plan.platform,
            model_dir=plan.model_path,
            offline_wheelhouse=plan.wheelhouse,
            refresh=plan.refresh_lock,
        )
    if not lock.build_tools:
        tools = resolver.lock(
            ImageRequirements(python_version=lock.platform.python, requirements=()),
            lock.platform,
            offline_wheelhouse=plan.wheelhouse,
        )
        lock = Lock(
            platform=lock.platform,
            packages=lock.packages,
            build_tools=tools.build_tools,
            inputs_digest=lock.inputs_digest,
            notes=lock.notes,
        )
    for warning in lock_warnings(plan, lock, resolver):
        log.warning(warning)
    return lock


def lock_warnings(plan: BuildPlan, lock: Lock, resolver: Resolver) -> tuple[str, ...]:
    """What the resolved set says about the model's requirements: two builds of one package
    that a dependency brought back (:mod:`deployer.environment.variants`), and requirements
    nothing that runs uses, with their size (:mod:`deployer.environment.footprint`)."""
    from deployer.environment import footprint, loader_deps, variants
    from deployer.model.references import referenced_modules

    out = [
        f"the resolved environment has {', '.join(found)}: two builds of {package} installed over "
        "each other (a dependency asks for the other name); pin the one you want with --pip"
        for package, found in variants.conflicts(p.name for p in lock.packages)
    ]
    paths = [path for p in lock.packages if (path := resolver.store.lookup(p.sha256)) is not None]
    if len(paths) != len(lock.packages) or plan.env_kind == "local":
        return tuple(out)
    used = [*plan.requirements.runtime, *(r.package for r in plan.loader_requirements)]
    unused = footprint.unused_requirements(
        plan.requirements.requirements,
        used,
        # every model's references (a multi-model image's models share the environment)
        frozenset().union(*(referenced_modules(p) for p in model_paths(plan))),
        footprint.facts_from_wheels(paths),
        python_version=lock.platform.python,
        alternatives=loader_deps.ALTERNATIVES,
    )
    for item in unused:
        out.append(
            f"the model requires {item.describe()}, but neither its flavor's loader nor its files "
            "import "
            "it and nothing they use depends on it: it only makes the image bigger. Leave it out "
            "when "
            "saving the model (pip_requirements=), or remove it from the model's requirements.txt "
            "and "
            "python_env.yaml"
        )
    return tuple(out)


def model_paths(plan: BuildPlan) -> tuple[Path, ...]:
    """The model directories an image is made from (each model of a multi-model image)."""
    return tuple(m.path for m in plan.models) or (plan.model_path,)


def uv_sha256_of(lock: Lock | None) -> str:
    uv = next((t for t in lock.build_tools if t.name == "uv"), None) if lock else None
    return uv.sha256 if uv else ""


def write_context(
    plan: BuildPlan,
    out_dir: Path,
    *,
    buildkit: bool = False,
    resolver: Resolver | None = None,
    overwrite: bool = False,
    on_line: LineSink | None = None,
    part: str = "full",
    deps_image: str | None = None,
) -> BuildContext:
    """Write the build context for ``plan`` into ``out_dir`` (see module docstring).

    ``part``: "full" (one Dockerfile, what `deployer generate` writes), or the two halves
    `deployer build` uses: "deps" (base + Python environment; wheels only) and "model"
    (runtime + model on top of ``deps_image``; no wheels). The plan must carry its lock for
    "model" (see :func:`resolve_lock`).
    """
    if part not in ("full", "deps", "model"):
        raise ValueError(f"unknown context part {part!r}")
    if part == "model" and (not deps_image or (plan.env_kind != "local" and plan.lock is None)):
        raise BuildError(
            "a model-only context needs the environment image and the lock",
            fix="this is a bug in deployer: report it",
        )
    say = on_line or (lambda _line: None)
    _prepare_dir(out_dir, overwrite)
    resolver = resolver or Resolver()
    build_dir = out_dir / "deployer-build"
    wheel_count = wheel_bytes = 0

    if part != "model" and plan.env_kind in ("virtualenv", "conda"):
        build_dir.mkdir()
        if plan.env_kind == "conda":
            lock = _conda_inputs(plan, out_dir, build_dir, resolver, say)
            lock = resolve_lock(replace(plan, lock=lock), resolver, say)
        else:
            lock = resolve_lock(plan, resolver, say)
        files = resolver.materialize(
            lock,
            index_options=plan.requirements.index_options,
            model_dir=plan.model_path,
            offline_wheelhouse=plan.wheelhouse,
        )
        link_wheels(files, out_dir / "wheels")
        wheel_count = len(files)
        wheel_bytes = sum(p.stat().st_size for p in files.values())
        say(f"{len(lock.packages)} locked packages, {wheel_bytes / 1e6:.0f} MB of wheels")
        _write(build_dir / LOCK_NAME, lock.canonical_text())
        shutil.copyfile(Path(__file__).with_name("_build_venv.py"), build_dir / "build_venv.py")
        plan = plan.with_lock(lock)

    if part != "deps":
        _write_runtime(plan, out_dir / "runtime")
        if plan.models:
            for model in plan.models:
                (out_dir / MODELS_CONTEXT_DIR).mkdir(exist_ok=True)
                copy_model(model.path, out_dir / MODELS_CONTEXT_DIR / model.name)
        else:
            _write_model(plan, out_dir / "model")

    variables = dockerfile_context(
        plan, buildkit=buildkit, uv_sha256=uv_sha256_of(plan.lock), part=part, deps_image=deps_image
    )
    dockerfile = render_template("Dockerfile.j2", **variables)
    _write(out_dir / "Dockerfile", dockerfile)
    _write(
        out_dir / ".dockerignore",
        render_template("dockerignore.j2", deployer_version=__version__, plan_file=PLAN_FILE),
    )
    if part == "full":
        if contract(plan.target).service_script:
            _write(out_dir / "create_service.sh", render_create_service(plan), 0o755)
        _write(out_dir / PLAN_FILE, json.dumps(plan.to_dict(), indent=2) + "\n")
    _normalize_tree(out_dir)
    return BuildContext(
        path=out_dir,
        plan=plan,
        buildkit=buildkit,
        dockerfile=dockerfile,
        wheel_count=wheel_count,
        wheel_bytes=wheel_bytes,
    )


def _write_runtime(plan: BuildPlan, runtime_root: Path) -> None:
    """deployer's serving modules, the entry point, and (Azure) the entry script."""
    src_root = package_dir().parent
    for rel in plan.runtime.files:
        _copy(src_root / rel, runtime_root / rel)
    _write(
        runtime_root / "bin" / "serve", render_template("serve.j2", **serve_context(plan)), 0o755
    )
    if contract(plan.target).entry_script:
        from deployer.serving.azure import render_score_py

        _write(runtime_root / "score.py", render_score_py(model_name=plan.model_name))


def _write_model(plan: BuildPlan, model_root: Path) -> None:
    """The model, file by file, as it ships (:mod:`deployer.model.files`: escaping symlinks
    refused, URLs in environment files scrubbed)."""
    model_root.mkdir()
    copy_model(plan.model_path, model_root)


def _conda_inputs(
    plan: BuildPlan, out_dir: Path, build_dir: Path, resolver: Resolver, say: LineSink
):  # type: ignore[no-untyped-def]
    """conda: explicit spec + packages from the conda lock; its pip part as a pip Lock."""
    from deployer.building import conda as conda_mod  # yaml/urllib only when a model needs conda

    lockfile = conda_mod.find_lockfile(plan.model_path, plan.conda_lock)
    if lockfile is None:
        raise EnvironmentSpecError(
            "the model needs conda packages, but there is no conda lockfile (conda channels are "
            "not "
            "solved inside image builds)",
            where=str(plan.model_path / "conda.yaml"),
            fix="run `conda-lock -f conda.yaml -p linux-64` next to the model (or pass "
            "--conda-lock FILE)",
        )
    parsed = conda_mod.parse_conda_lock(lockfile)
    conda_platform = conda_mod.CONDA_PLATFORMS[plan.platform.arch]
    packages = parsed.for_platform(conda_platform)
    py = parsed.python_version(conda_platform) or plan.platform.python
    platform = TargetPlatform(python=py, arch=plan.platform.arch, glibc=plan.platform.glibc)
    _write(build_dir / "conda-explicit.txt", conda_mod.explicit_spec(packages, CONDA_PKGS_DIR))
    say(f"fetching {sum(p.manager == 'conda' for p in packages)} conda packages on this host")
    conda_mod.download_conda_packages(packages, out_dir / "conda-pkgs")
    pip_part = conda_mod.pip_lock(packages, platform)
    runtime = resolver.lock(
        type(plan.requirements)(
            python_version=py,
            requirements=plan.requirements.requirements,
            constraints=tuple(f"{p.name}=={p.version}" for p in pip_part.packages),
            index_options=plan.requirements.index_options,
        ),
        platform,
        model_dir=plan.model_path,
        offline_wheelhouse=plan.wheelhouse,
    )
    merged = {p.name: p for p in runtime.packages}
    merged.update({p.name: p for p in pip_part.packages})
    return type(runtime)(
        platform=platform,
        packages=tuple(sorted(merged.values())),
        build_tools=runtime.build_tools,
        inputs_digest=runtime.inputs_digest,
    )


def check_context(path: Path) -> None:
    if not (path / "Dockerfile").is_file():
        raise BuildError(
            "not a build context (no Dockerfile)",
            where=str(path),
            fix="write one with `deployer generate -m MODEL -o DIR`",
        )

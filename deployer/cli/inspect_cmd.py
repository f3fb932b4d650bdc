"""``deployer inspect``: what is this model, and what does it need to run."""

from __future__ import annotations

import json
import logging
from typing import Any

from deployer.cli.common import command as deployer_command
from deployer.cli.common import get_console, model_option
from deployer.intake import LoadedModel, load_model
from deployer.model.signature import ParamSpec, Schema, Signature, TensorSpec
from deployer.redact import redact_text

log = logging.getLogger("deployer")

SCHEMA_VERSION = 1


@deployer_command("inspect")
@model_option
def command(model_uri: str) -> None:
    """Show a model's flavors, loader, Python, requirements, signature and warnings.

    \b
    Exit codes: 0 the model is deployable, 1 it is not (the error says why), 2 bad usage.

    \b
    --output json prints one JSON object (stable; new keys may be added, none removed):
      schema_version   1
      uri, path        the URI given and the local model directory
      flavors          [flavor names], sorted
      loader_module    python_function loader module
      python_version   Python the environment will use (null if unknown)
      model            {artifact_path, model_uuid, run_id, model_id, utc_time_created,
                        mlflow_version, databricks_runtime, model_size_bytes, metadata}
      pyfunc           {code, data, model_path, predict_fn, python_version,
                        env: {conda, virtualenv}}
      environment      {kind: virtualenv|conda, source, python_version, pip_requirements,
                        constraints, build_dependencies, conda_packages, conda_channels,
                        index_options: {index_url, extra_index_urls, find_links}, warnings,
                        uv_lock}
                       (credentials in index URLs are shown as ***); uv_lock is null, or the
                       model's uv.lock (the image's lock): {path, project, version,
                       python_version, packages: [{name, version, hashes}], index_urls}
      signature        null, or {inputs, outputs, params}; inputs/outputs are null or
                       {kind: column|tensor, columns: [...]}; a column is
                       {name, type, type_repr, required, detail}, a tensor {name, dtype, shape},
                       a param {name, type, default, shape}
      input_example    {present, type, pandas_orient, artifact_path, serving_input_path,
                        serving_input_present}
      loader_requirements  [{package, field, saved_version, listed}]: what the flavor's loader
                       imports (field: the MLmodel field that needs it); listed=false ones are
                       added at build time (or refused with --no-auto-deps)
      auto_deps        [packages the build would add]
      load_mode        {mode: preload|per-worker, reason, certain}: how the server loads the
                       model (once before forking its workers, or in each worker: libraries
                       that do not survive fork); certain=false: decided again after loading
      system_packages  [{distribution, packages, reason}]: Debian packages the build adds for
                       shared libraries the requirements' wheels need (--no-auto-deps: none)
      requirement_variants  [{dropped, kept, package}]: two builds of one package listed
                       together (xgboost + xgboost-cpu); the build keeps one (CPU unless --gpu)
      unused_requirements  {checked, not_installed_here, items: [{requirement, name, size,
                       brings}]}: requirements
                       neither the loader nor the model's files use, with the installed bytes they
                       alone add (>= 25 MiB; sizes from this host's installed packages: checked
                       is false when it lacks some of them; the build checks the locked wheels)
      warnings         [messages]
    """
    console = get_console()
    log.info("inspecting %s", redact_text(model_uri))
    model = load_model(model_uri)
    log.debug("model directory: %s", model.path)
    data = inspect_data(model)
    console.result(data, text=lambda: render_text(data))


def inspect_data(model: LoadedModel) -> dict[str, Any]:
    """The JSON document of ``deployer inspect`` (keys documented in the command docstring)."""
    ml = model.mlmodel
    pyfunc = ml.pyfunc
    assert pyfunc is not None  # load_model guarantees it
    info = ml.saved_input_example_info
    return {
        "schema_version": SCHEMA_VERSION,
        "uri": redact_text(model.uri),
        "path": str(model.path),
        "flavors": sorted(ml.flavors),
        "loader_module": pyfunc.loader_module,
        "python_version": model.environment.python_version,
        "model": {
            "artifact_path": ml.artifact_path,
            "model_uuid": ml.model_uuid,
            "run_id": ml.run_id,
            "model_id": ml.model_id,
            "utc_time_created": ml.utc_time_created,
            "mlflow_version": ml.mlflow_version,
            "databricks_runtime": ml.databricks_runtime,
            "model_size_bytes": ml.model_size_bytes,
            "metadata": ml.metadata,
        },
        "pyfunc": {
            "code": pyfunc.code,
            "data": pyfunc.data,
            "model_path": pyfunc.model_path,
            "predict_fn": pyfunc.predict_fn,
            "python_version": pyfunc.python_version,
            "env": {"conda": pyfunc.env.conda, "virtualenv": pyfunc.env.virtualenv},
        },
        "environment": model.environment.to_dict(),
        "signature": _signature(ml.signature),
        "input_example": {
            "present": model.input_example_path is not None,
            "type": info.type if info else None,
            "pandas_orient": info.pandas_orient if info else None,
            "artifact_path": info.artifact_path if info else None,
            "serving_input_path": info.serving_input_path if info else None,
            "serving_input_present": model.serving_input_path is not None,
        },
        **_loader(model),
        **_hygiene(model),
        "warnings": list(model.warnings),
    }


def _hygiene(model: LoadedModel) -> dict[str, Any]:
    """Load mode, OS packages, duplicate builds and unused requirements (what `build` does)."""
    from deployer.building.dependencies import serving_requirements
    from deployer.environment import footprint, loader_deps, system_deps, variants
    from deployer.model.references import referenced_modules
    from deployer.serving.loading import decide

    env = model.environment
    names = loader_deps.distribution_names(env.pip_requirements)
    referenced = referenced_modules(model.path)
    pyfunc = model.mlmodel.pyfunc
    load = decide(pyfunc.loader_module if pyfunc else None, names, referenced)
    kept, dropped = variants.resolve(env.pip_requirements)
    python = env.python_version or (pyfunc.python_version if pyfunc else None) or ""
    unused: tuple[footprint.UnusedRequirement, ...] = ()
    absent: list[str] = list(names)
    if python and env.pip_requirements:
        used = [
            *serving_requirements(".".join(python.split(".")[:2])),
            "mlflow",
            "mlflow-skinny",
            *(r.package for r in loader_deps.loader_requirements(model.mlmodel)),
        ]
        facts = footprint.facts_from_installed()
        unused = footprint.unused_requirements(
            kept,
            used,
            referenced,
            facts,
            python_version=".".join(python.split(".")[:2]),
            alternatives=loader_deps.ALTERNATIVES,
            complete=False,
        )
        absent = sorted(n for n in loader_deps.distribution_names(kept) if n not in facts)
    return {
        "load_mode": load.to_dict(),
        "system_packages": [
            {"distribution": n.distribution, "packages": list(n.packages), "reason": n.reason}
            for n in system_deps.needs(names)
        ],
        "requirement_variants": [
            {"dropped": d.line, "kept": d.kept, "package": d.package} for d in dropped
        ],
        "unused_requirements": {
            "checked": not absent,
            "not_installed_here": absent,
            "items": [u.to_dict() for u in unused],
        },
    }


def _loader(model: LoadedModel) -> dict[str, Any]:
    from deployer.environment import loader_deps

    needed = loader_deps.loader_requirements(model.mlmodel)
    env = model.environment
    absent = set(
        loader_deps.missing(
            needed, loader_deps.distribution_names((*env.pip_requirements, *env.conda_packages))
        )
    )
    return {
        "loader_requirements": [{**r.to_dict(), "listed": r not in absent} for r in needed],
        "auto_deps": [r.package for r in needed if r in absent],
    }


def _schema(schema: Schema | None) -> dict[str, Any] | None:
    if schema is None:
        return None
    cols: list[dict[str, Any]] = []
    for c in schema.columns:
        if isinstance(c, TensorSpec):
            cols.append({"name": c.name, "dtype": c.dtype, "shape": list(c.shape)})
        else:
            cols.append(
                {
                    "name": c.name,
                    "type": c.type,
                    "type_repr": c.type_repr(),
                    "required": c.required,
                    "detail": c.detail,
                }
            )
    return {"kind": schema.kind, "columns": cols}


def _param(p: ParamSpec) -> dict[str, Any]:
    return {
        "name": p.name,
        "type": p.type,
        "default": p.default,
        "shape": list(p.shape) if p.shape is not None else None,
    }


def _signature(sig: Signature | None) -> dict[str, Any] | None:
    if sig is None:
        return None
    return {
        "inputs": _schema(sig.inputs),
        "outputs": _schema(sig.outputs),
        "params": [_param(p) for p in sig.params],
    }


# --- text rendering -----------------------------------------------------------------------


def _table(headers: list[str], rows: list[list[str]], indent: str = "    ") -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return indent + "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return [line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def _schema_lines(title: str, schema: dict[str, Any] | None) -> list[str]:
    if schema is None:
        return [f"  {title}: (none)"]
    out = [f"  {title} ({schema['kind']}-based):"]
    if schema["kind"] == "tensor":
        rows = [
            [c["name"] or "-", c["dtype"], "(" + ", ".join(map(str, c["shape"])) + ")"]
            for c in schema["columns"]
        ]
        return out + _table(["name", "dtype", "shape"], rows)
    rows = [
        [
            c["name"] if c["name"] is not None else "-",
            c["type_repr"],
            "yes" if c["required"] else "no",
        ]
        for c in schema["columns"]
    ]
    return out + _table(["name", "type", "required"], rows)


def _listing(label: str, items: list[str]) -> list[str]:
    if not items:
        return [f"  {label}: (none)"]
    return [f"  {label}:"] + [f"    {i}" for i in items]


def render_text(d: dict[str, Any]) -> str:
    env = d["environment"]
    lines = [
        f"Model:          {d['path']}",
        f"Flavors:        {', '.join(d['flavors'])}",
        f"Loader:         {d['loader_module']}"
        + (f" (predict_fn: {d['pyfunc']['predict_fn']})" if d["pyfunc"]["predict_fn"] else ""),
        f"Python:         {d['python_version'] or 'unknown'}",
    ]
    if d["model"]["mlflow_version"]:
        lines.append(f"MLflow version: {d['model']['mlflow_version']}")
    if d["model"]["run_id"]:
        lines.append(f"Run id:         {d['model']['run_id']}")
    lines.append(f"Environment:    {env['kind']} (from {env['source']})")
    uv = env.get("uv_lock")
    if uv:
        count = f"{len(uv['packages'])} packages" if "packages" in uv else "its packages"
        lines.append(
            f"Lock:           {uv['path']} (uv project {uv['project']}): {count} at the locked "
            "versions and hashes; the image installs exactly these"
        )
        lines += [f"    {p['name']}=={p['version']}" for p in uv.get("packages", [])]
    lines += _listing("Requirements", env["pip_requirements"])
    if env["constraints"]:
        lines += _listing("Constraints", env["constraints"])
    if env["build_dependencies"]:
        lines.append(f"  Build dependencies: {', '.join(env['build_dependencies'])}")
    lines += _listing("Conda-only packages", env["conda_packages"])
    if env["conda_channels"]:
        lines.append(f"  Conda channels: {', '.join(env['conda_channels'])}")
    idx = env["index_options"]
    opts = (
        ([f"--index-url {idx['index_url']}"] if idx["index_url"] else [])
        + [f"--extra-index-url {u}" for u in idx["extra_index_urls"]]
        + [f"--find-links {u}" for u in idx["find_links"]]
    )
    lines += _listing("Index options", opts)
    sig = d["signature"]
    if sig is None:
        lines.append("Signature:      (none)")
    else:
        lines.append("Signature:")
        lines += _schema_lines("Inputs", sig["inputs"])
        lines += _schema_lines("Outputs", sig["outputs"])
        if sig["params"]:
            lines.append("  Params:")
            rows = [
                [
                    p["name"],
                    p["type"],
                    json.dumps(p["default"]),
                    "(" + ", ".join(map(str, p["shape"])) + ")" if p["shape"] else "-",
                ]
                for p in sig["params"]
            ]
            lines += _table(["name", "type", "default", "shape"], rows)
    if d["loader_requirements"]:
        lines.append(
            "Loader needs:   "
            + ", ".join(
                r["package"] + ("" if r["listed"] else " (not in the requirements)")
                for r in d["loader_requirements"]
            )
        )
    if d["auto_deps"]:
        lines.append(
            f"  added at build time: {', '.join(d['auto_deps'])} (--no-auto-deps makes this an "
            "error)"
        )
    load = d["load_mode"]
    lines.append(f"Serving:        load mode {load['mode']} ({load['reason']})")
    for need in d["system_packages"]:
        lines.append(
            f"  OS packages added at build time: {', '.join(need['packages'])} "
            f"({need['distribution']} needs {need['reason']}; --no-auto-deps skips them)"
        )
    for v in d["requirement_variants"]:
        lines.append(
            f"  duplicate build: {v['dropped']} is dropped at build time, {v['kept']} kept "
            f"(both install {v['package']})"
        )
    unused = d["unused_requirements"]
    if not unused["checked"] and unused["not_installed_here"]:
        missing = unused["not_installed_here"]
        lines.append(
            f"  unused requirements: not checked here (this host lacks {', '.join(missing[:5])}"
            f"{'...' if len(missing) > 5 else ''}; `deployer build` checks the locked wheels)"
        )
    for u in unused["items"]:
        mib = u["size"] / (1 << 20)
        lines.append(
            f"  unused requirement: {u['requirement']} ({mib:,.0f} MiB on this host"
            + (f", with {', '.join(u['brings'][:4])}" if u["brings"] else "")
            + "): neither the loader nor the model's files use it"
        )
    ex = d["input_example"]
    if ex["present"]:
        kind = f"{ex['type']}, " if ex["type"] else ""
        lines.append(f"Input example:  yes ({kind}{ex['artifact_path']})")
    else:
        lines.append("Input example:  no")
    if d["warnings"]:
        lines.append("Warnings:")
        lines += [f"  - {w}" for w in d["warnings"]]
    return "\n".join(lines)


__all__ = ["command", "inspect_data", "render_text"]

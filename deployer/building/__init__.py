"""The image builder: plan (pure) -> build context (rendered + wheels) -> image (engine).

Public API::

    plan = plan_build(load_model(uri), BuildOptions(target="sagemaker"))   # no side effects
    ctx = write_context(plan, out_dir, buildkit=engine.buildkit)            # resolves, renders
    result = execute_build(plan, ctx, engine)                              # builds, measures

``execute_build(plan)`` alone writes a temporary context for the detected engine;
``build_model_image(uri, options)`` does load + plan + the two-part build in one call.
"""

from deployer.building.context import BuildContext, write_context
from deployer.building.engine import BuildEngine, detect_engine
from deployer.building.execute import BuildResult, build_model_image, execute_build
from deployer.building.plan import BuildOptions, BuildPlan, plan_build

__all__ = [
    "BuildContext",
    "BuildEngine",
    "BuildOptions",
    "BuildPlan",
    "BuildResult",
    "build_model_image",
    "detect_engine",
    "execute_build",
    "plan_build",
    "write_context",
]

"""Free the test engine's disk from what earlier test runs left: ``python docker/reclaim-disk.py``.

Why: every test run builds a few hundred images (fixture models, corpus flavors, verification
stages, registry copies) in deployer's own engine, whose data root persists across runs. Runs
on one machine used to pile up ~50 GB until builds failed with a full disk. scripts/test.sh
calls this before pytest, only for deployer's private engine (``unix:///run/deployer/...``),
never for an engine the user's ``docker`` already reached. It keeps the Debian-built Python
base image (``deployer-base/*``, minutes to rebuild) and the engine test images, removes every
other image no container uses, and empties the build cache. Prints what it freed.
"""

from __future__ import annotations

import os
import sys

import docker

KEEP = ("deployer-base/", "deployer-test/engine:")


def main() -> int:
    client = docker.DockerClient(base_url=os.environ["DOCKER_HOST"], timeout=600)
    used = {c.image.id for c in client.containers.list(all=True) if c.image is not None}
    removed = 0
    for image in client.images.list():
        if image.id in used or any(t.startswith(KEEP) for t in image.tags):
            continue
        try:
            client.images.remove(image.id, force=True)
            removed += 1
        except docker.errors.APIError as exc:  # a parent of a kept image, or gone already
            print(f"reclaim-disk: kept {image.short_id}: {exc.explanation}", file=sys.stderr)
    freed = client.api.prune_builds(all=True).get("SpaceReclaimed") or 0
    dangling = client.images.prune(filters={"dangling": True}).get("SpaceReclaimed") or 0
    print(f"reclaim-disk: removed {removed} images from earlier runs, "
          f"{(freed + dangling) / 2**30:.1f} GiB of build cache and dangling layers", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Build the image's Python environment, offline, inside the Dockerfile's ``deps`` stage.

Copied into every build context as ``deployer-build/build_venv.py`` and run by the base
image's own ``python3`` (so: standard library only, Python 3.8+ syntax, no deployer imports).

Steps, and why:

1. Check the interpreter is the Python X.Y the lock was made for: wheels are tagged
   ``cp311``; a mismatch would otherwise surface as an obscure "no matching distribution".
2. Take ``uv`` from the wheelhouse (a wheel, like everything else: no download, no apt) after
   checking its sha256 against the lock, and unpack only its binary. If the wheelhouse has no
   uv (a hand-made air-gapped wheelhouse), fall back to the base image's pip.
3. Create the environment (a venv, or none for conda: it installs into the conda prefix) and
   install ``requirements.lock`` with ``--no-index --require-hashes``: only the wheels in the
   context, only with the hashes the lock pins.
4. Delete the packages' own test suites (``<pkg>/**/tests/``: pandas alone ships 46 MB of
   them; nothing imports them at run time). ``--keep-tests`` keeps them.
5. Byte-compile everything left (unchecked-hash pycs: valid whatever the file times), so the
   container starts without compiling, and without needing a writable site-packages.
6. Keep a copy of the lock in the environment (``<prefix>/deployer-requirements.lock``), so
   any image can be rebuilt with exactly its dependencies:
   ``docker run --rm --entrypoint cat IMAGE <prefix>/deployer-requirements.lock > model.lock``
   then ``deployer build --lock model.lock``. (Package names, versions and hashes only.)

No network is used, so no index URL, proxy, CA bundle or credential is needed or left behind.
Usage: python3 build_venv.py --wheels DIR --lock FILE --prefix DIR --python-version X.Y
       [--uv-sha256 HEX] [--no-venv] [--keep-tests]
"""

import argparse
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile


def fail(message):
    sys.stderr.write("deployer build: " + message + "\n")
    sys.exit(1)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def find_uv(wheels, expected):
    for name in sorted(os.listdir(wheels)):
        if name.startswith("uv-") and name.endswith(".whl"):
            path = os.path.join(wheels, name)
            if expected and sha256(path) != expected:
                fail(
                    "the uv wheel " + name + " does not match the lock's sha256; refusing to run it"
                )
            return path
    return None


def unpack_uv(wheel, dest):
    with zipfile.ZipFile(wheel) as zf:
        for member in zf.namelist():
            if member.endswith(".data/scripts/uv"):
                target = os.path.join(dest, "uv")
                with zf.open(member) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
                os.chmod(
                    target, os.stat(target).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
                )
                return target
    fail("the uv wheel " + os.path.basename(wheel) + " has no uv binary")


def run(cmd, env=None):
    sys.stdout.write("+ " + " ".join(cmd) + "\n")
    sys.stdout.flush()
    code = subprocess.call(cmd, env=env)
    if code != 0:
        fail("command failed with exit code {}: {}".format(code, " ".join(cmd)))


#: Where the lock is kept inside the environment (step 6).
LOCK_COPY = "deployer-requirements.lock"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--wheels", required=True)
    parser.add_argument("--lock", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--python-version", required=True)
    parser.add_argument("--uv-sha256", default="")
    parser.add_argument(
        "--no-venv", action="store_true", help="install into --prefix's existing Python"
    )
    parser.add_argument("--keep-tests", action="store_true")
    args = parser.parse_args()

    have = "{}.{}".format(*sys.version_info[:2])
    if not args.no_venv and have != args.python_version:
        fail(
            f"the base image has Python {have} ({sys.executable}) but the model and its lock need "
            f"Python {args.python_version}; "
            f"use a base image with Python {args.python_version} (deployer build --base-image ...)"
        )

    python = os.path.join(args.prefix, "bin", "python")
    work = tempfile.mkdtemp(prefix="deployer-build-")
    uv_wheel = find_uv(args.wheels, args.uv_sha256)
    env = dict(os.environ)
    env.update(
        {
            "UV_NO_CONFIG": "1",
            "UV_PYTHON_DOWNLOADS": "never",
            "UV_OFFLINE": "1",
            "UV_LINK_MODE": "copy",
            "UV_NO_PROGRESS": "1",
            "PIP_NO_INDEX": "1",
            "PIP_CONFIG_FILE": os.devnull,
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        }
    )
    env["UV_NO_CACHE"] = "1"
    if uv_wheel:
        uv = unpack_uv(uv_wheel, work)
        if not args.no_venv:
            run([uv, "venv", "--python", sys.executable, args.prefix], env=env)
        else:
            python = os.path.join(args.prefix, "bin", "python")
        run(
            [
                uv,
                "pip",
                "install",
                "--python",
                python,
                "--no-index",
                "--find-links",
                args.wheels,
                "--require-hashes",
                "--requirement",
                args.lock,
            ],
            env=env,
        )
    else:
        sys.stdout.write("no uv wheel in the wheelhouse: installing with pip\n")
        if not args.no_venv:
            run([sys.executable, "-m", "venv", "--without-pip", args.prefix], env=env)
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "--python",
                python,
                "install",
                "--no-index",
                "--find-links",
                args.wheels,
                "--require-hashes",
                "--no-deps",
                "--no-compile",
                "--requirement",
                args.lock,
            ],
            env=env,
        )
    shutil.rmtree(work, ignore_errors=True)
    site = (
        subprocess.check_output(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
        )
        .decode()
        .strip()
    )
    if not args.keep_tests:
        strip_tests(site)
    # compileall exits non-zero if any file fails to compile (some packages ship Python 2
    # fixtures or templates with a .py suffix): that must not fail the build.
    code = subprocess.call(
        [
            python,
            "-m",
            "compileall",
            "-q",
            "-q",
            "-j",
            "0",
            "--invalidation-mode",
            "unchecked-hash",
            site,
        ]
    )
    if code != 0:
        sys.stdout.write(
            "note: some files could not be byte-compiled (they are not Python 3 modules)\n"
        )
    shutil.copyfile(args.lock, os.path.join(args.prefix, LOCK_COPY))


def strip_tests(site):
    """Remove ``tests`` folders *inside* packages (never a top-level ``tests`` package)."""
    removed = 0
    for top in sorted(os.listdir(site)):
        root = os.path.join(site, top)
        if not os.path.isdir(root) or top.endswith((".dist-info", ".data")):
            continue
        for dirpath, dirnames, _files in os.walk(root):
            for name in list(dirnames):
                if name == "tests":
                    shutil.rmtree(os.path.join(dirpath, name), ignore_errors=True)
                    dirnames.remove(name)
                    removed += 1
    sys.stdout.write(f"removed {removed} bundled test suites\n")


if __name__ == "__main__":
    main()

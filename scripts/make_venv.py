"""Create a virtual environment holding the project's pinned packages, from a wheel cache.

Usage: python scripts/make_venv.py VENV --python 3.13 [--bpy 5.3.0]

Installs requirements.lock and requirements-dev.lock with ``--no-deps`` (the locks
hold every dependency; markers pick numpy 1.x on Python 3.11 and 2.x on 3.13).
``--bpy`` replaces the dev lock's bpy pin (the Blender version matrix uses one
venv per bpy version). Wheels come from a cache folder, env ``DDFA_WHEEL_CACHE``
(default ``~/.cache/ddfa-blender/wheels``), filled from PyPI on first use: later
venvs, and CI runs on the same machine, need no download. The interpreter is
``pythonX.Y`` on the PATH, else pyenv's newest X.Y. On success ``VENV/.installed``
records what was installed; when it already matches, nothing is done.
Exits 1 with a one-line message on any problem.
"""

import argparse
import glob
import hashlib
import os
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
LOCKS = (ROOT / "requirements.lock", ROOT / "requirements-dev.lock")
STAMP = ".installed"


class SetupError(Exception):
    """A set-up step failed; the message names it and the fix."""


def wheel_cache() -> pathlib.Path:
    """The shared wheel cache (env ``DDFA_WHEEL_CACHE``, default ``~/.cache/ddfa-blender/wheels``)."""
    default = pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache")
    return pathlib.Path(os.environ.get("DDFA_WHEEL_CACHE") or default / "ddfa-blender" / "wheels")


def find_python(version: str) -> str:
    """An interpreter of ``version`` (``3.13``): ``python3.13`` if it runs, else pyenv's newest."""
    candidates = [shutil.which(f"python{version}")]
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates += sorted(
        glob.glob(os.path.join(pyenv_root, "versions", f"{version}.*", "bin", f"python{version}")),
        key=lambda path: [int(p) for p in path.split(os.sep)[-3].split(".") if p.isdigit()],
        reverse=True,
    )
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                               capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return candidate
    raise SetupError(f"no Python {version} found (python{version} on the PATH or pyenv): install it")


def requirements(bpy: str | None) -> list[str]:
    """The lock files' requirement lines, the bpy pin replaced by ``bpy`` when given."""
    lines = []
    for lock in LOCKS:
        for line in lock.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            if bpy and line.lower().startswith("bpy=="):
                continue
            lines.append(line)
    if bpy:
        lines.append(f"bpy=={bpy}")
    return lines


def pip(python: pathlib.Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True)


def make_venv(venv: pathlib.Path, version: str, bpy: str | None = None, cache=None) -> bool:
    """Create or refresh ``venv``; False when it was already up to date."""
    cache = pathlib.Path(cache or wheel_cache())
    lines = requirements(bpy)
    digest = hashlib.sha256("\n".join([version, *lines]).encode()).hexdigest()
    stamp = venv / STAMP
    python = venv / "bin" / "python"
    if stamp.is_file() and stamp.read_text().strip() == digest and python.exists():
        stamp.touch()  # newer than the locks: make sees the venv up to date
        return False
    interpreter = find_python(version)
    created = subprocess.run([interpreter, "-m", "venv", "--clear", str(venv)], capture_output=True, text=True)
    if created.returncode != 0:
        raise SetupError(f"could not create {venv}: {created.stderr.strip().splitlines()[-1:]}")
    listing = venv / "requirements.txt"
    listing.write_text("\n".join(lines) + "\n")
    cache.mkdir(parents=True, exist_ok=True)
    install = ("install", "--quiet", "--no-deps", "--no-index", "--find-links", str(cache), "-r", str(listing))
    if pip(python, *install).returncode != 0:  # something is not in the cache yet
        fetched = pip(python, "download", "--quiet", "--no-deps", "--only-binary=:all:",
                      "-d", str(cache), "-r", str(listing))
        if fetched.returncode != 0:
            detail = (fetched.stderr.strip().splitlines() or ["no output"])[-1]
            raise SetupError(f"pip could not download the pinned wheels into {cache} ({detail})")
        installed = pip(python, *install)
        if installed.returncode != 0:
            detail = (installed.stderr.strip().splitlines() or ["no output"])[-1]
            raise SetupError(f"pip could not install into {venv} ({detail})")
    stamp.write_text(digest + "\n")
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("venv", help="the virtual environment's folder")
    parser.add_argument("--python", required=True, help="Python version, e.g. 3.11 or 3.13")
    parser.add_argument("--bpy", help="bpy version instead of the dev lock's")
    args = parser.parse_args(argv)
    venv = pathlib.Path(args.venv)
    try:
        changed = make_venv(venv, args.python, args.bpy)
    except SetupError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{venv}: Python {args.python}" + (f", bpy {args.bpy}" if args.bpy else "")
          + ("" if changed else " (up to date)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

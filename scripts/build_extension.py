"""Build the Blender extension zip(s): the add-on, its manifest and the bundled wheels.

Usage: python scripts/build_extension.py [--out dist] [--platform linux-x64 ...] [--no-split]
                                        [--update-manifest]

Layout. An extension zip has ``blender_manifest.toml`` and the add-on's
``__init__.py`` at its top level. In this repository the manifest stays at
the top level and the add-on is the ``ddfa_blender/`` package, so the zip is
assembled in a staging folder:

    staging/blender_manifest.toml   the repository's manifest, with ``version``
                                    set to ``ddfa_blender.__version__`` and
                                    ``wheels`` listing the files below
    staging/__init__.py, core/, blender/ ...   the contents of ddfa_blender/
    staging/wheels/*.whl            the bundled wheels

Wheels. The runtime pins of requirements.lock minus numpy (Blender ships it)
are downloaded from PyPI as cp311 binary wheels for Linux x86_64, Windows x64
and macOS arm64 (``pip download --only-binary=:all: --no-deps --platform ...
--python-version 3.11``: the lock already holds every dependency). They are
cached in ``wheels/`` (git-ignored) with one stamp per platform recording the
lock's hash, so later builds need no network.

The repository's manifest lists the same wheels (so it says what ships):
a full build stops when the list or the version is stale, and
``--update-manifest`` rewrites both.

Build. Blender's own extension command line, shipped inside the ``bpy``
wheel (``bpy/*/scripts/addons_core/bl_pkg/cli/blender_ext.py``), runs
``build --split-platforms`` (one zip per platform, each with only its wheels)
and then ``validate`` on every zip. The zips land in ``--out``. Exits 1 with
a one-line message on any problem.
"""

import argparse
import glob
import hashlib
import importlib.util
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ddfa_blender"
MANIFEST = ROOT / "blender_manifest.toml"
LOCK = ROOT / "requirements.lock"
PYTHON_VERSION = "3.11"
ABI = "cp311"
# pip's --platform tags per Blender platform (pip also accepts older macOS and universal2).
PLATFORM_TAGS = {
    "linux-x64": ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"],
    "windows-x64": ["win_amd64"],
    "macos-arm64": ["macosx_14_0_arm64"],
}
NOT_BUNDLED = {"numpy"}  # Blender's own


class BuildError(Exception):
    """A build step failed; the message says which and how to fix it."""


def runtime_pins(lock_path=LOCK) -> list[str]:
    """``name==version`` lines of the lock file, without the packages Blender ships."""
    pins = []
    for line in pathlib.Path(lock_path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name = re.split(r"[=<>!~\[; ]", line, 1)[0]
        if name.lower() not in NOT_BUNDLED:
            pins.append(line)
    return pins


def download_wheels(platform: str, pins: list[str], cache: pathlib.Path) -> list[pathlib.Path]:
    """The wheels of ``pins`` for a Blender ``platform``, from the cache or PyPI."""
    lock_hash = hashlib.sha256("\n".join([*pins, *PLATFORM_TAGS[platform]]).encode()).hexdigest()
    stamp = cache / f".{platform}.json"
    if stamp.is_file():
        recorded = json.loads(stamp.read_text())
        files = [cache / name for name in recorded.get("files", [])]
        if recorded.get("lock_sha256") == lock_hash and all(f.is_file() for f in files):
            return files
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as work:
        command = [
            sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
            "--only-binary=:all:", "--no-deps", "--python-version", PYTHON_VERSION,
            "--implementation", "cp", "--abi", ABI, "--abi", "abi3", "--abi", "none",
            *(arg for tag in PLATFORM_TAGS[platform] for arg in ("--platform", tag)),
            "-d", work, *pins,
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise BuildError(f"pip could not download the {platform} wheels ({detail}); check the network")
        names = sorted(os.listdir(work))
        for name in names:
            os.replace(os.path.join(work, name), cache / name)
    stamp.write_text(json.dumps({"lock_sha256": lock_hash, "files": names}, indent=1))
    return [cache / name for name in names]


def package_version() -> str:
    """``__version__`` of ddfa_blender (read from its source, nothing imported)."""
    match = re.search(r'^__version__ = "([^"]+)"', (PACKAGE / "__init__.py").read_text(), re.M)
    if not match:
        raise BuildError("ddfa_blender/__init__.py has no __version__ line")
    return match.group(1)


def manifest_with(text: str, version: str, wheels: list[str]) -> str:
    """Manifest ``text`` with its ``version`` and ``wheels`` set."""
    text, count = re.subn(r'^version = "[^"]*"', f'version = "{version}"', text, count=1, flags=re.M)
    listing = "wheels = [\n" + "".join(f'  "./wheels/{name}",\n' for name in wheels) + "]"
    text, found = re.subn(r"^wheels = \[.*?\]", listing, text, count=1, flags=re.M | re.S)
    if count != 1 or found != 1:
        raise BuildError("blender_manifest.toml needs a `version = \"...\"` and a `wheels = [...]` line")
    return text


def check_manifest(version: str, wheels: list[str], update: bool) -> None:
    """The repository's manifest must list what the build bundles: update it or say how."""
    current = MANIFEST.read_text()
    expected = manifest_with(current, version, wheels)
    if current == expected:
        return
    if not update:
        raise BuildError(
            "blender_manifest.toml's version or wheels list differs from ddfa_blender.__version__ "
            "and requirements.lock: run `python scripts/build_extension.py --update-manifest`"
        )
    MANIFEST.write_text(expected)


def stage(staging: pathlib.Path, version: str, wheels: list[pathlib.Path]) -> None:
    """Assemble the zip's layout (see the module doc) in ``staging``."""
    shutil.copytree(
        PACKAGE, staging, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    (staging / "wheels").mkdir()
    for wheel in wheels:
        target = staging / "wheels" / wheel.name
        try:
            os.link(wheel, target)
        except OSError:
            shutil.copy2(wheel, target)
    names = sorted(wheel.name for wheel in wheels)
    (staging / "blender_manifest.toml").write_text(manifest_with(MANIFEST.read_text(), version, names))


def blender_ext_cli() -> pathlib.Path:
    """Blender's extension command line inside the installed ``bpy`` wheel."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        raise BuildError("the bpy module is not installed: `pip install bpy==5.0.1` (requirements-dev.lock)")
    for location in spec.submodule_search_locations:
        pattern = os.path.join(location, "*", "scripts", "addons_core", "bl_pkg", "cli", "blender_ext.py")
        found = glob.glob(pattern)
        if found:
            return pathlib.Path(found[0])
    raise BuildError("blender_ext.py not found in the bpy wheel")


def run_cli(cli: pathlib.Path, *args) -> str:
    result = subprocess.run([sys.executable, str(cli), *args], capture_output=True, text=True)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()
        raise BuildError(f"blender_ext {args[0]} failed: {output}")
    return result.stdout


def build(out: pathlib.Path, platforms: list[str], split: bool = True, cache=ROOT / "wheels",
          update_manifest: bool = False) -> list[pathlib.Path]:
    """Download, stage, build and validate; returns the zip files written to ``out``.

    The repository's manifest must already list every platform's wheels
    (``update_manifest`` rewrites its list and version first).
    """
    pins = runtime_pins()
    all_wheels = {}
    for platform in PLATFORM_TAGS:
        if platform in platforms or update_manifest:
            for wheel in download_wheels(platform, pins, pathlib.Path(cache)):
                all_wheels.setdefault(platform, []).append(wheel)
    version = package_version()
    if update_manifest or set(platforms) == set(PLATFORM_TAGS):
        names = sorted({wheel.name for found in all_wheels.values() for wheel in found})
        check_manifest(version, names, update_manifest)
    wheels = {wheel.name: wheel for p in platforms for wheel in all_wheels[p]}
    cli = blender_ext_cli()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ddfa-extension-") as work:
        staging = pathlib.Path(work) / "ddfa_blender"
        stage(staging, version, list(wheels.values()))
        if platforms != list(PLATFORM_TAGS):
            manifest = staging / "blender_manifest.toml"
            listed = "platforms = [" + ", ".join(f'"{p}"' for p in platforms) + "]"
            text = re.sub(r"^platforms = \[.*?\]", listed, manifest.read_text(), count=1, flags=re.M)
            manifest.write_text(text)
        suffixes = [f"-{p.replace('-', '_')}" for p in platforms] if split else [""]
        zips = [out / f"ddfa_blender-{version}{suffix}.zip" for suffix in suffixes]
        for archive in zips:
            if archive.exists():
                archive.unlink()
        run_cli(cli, "build", "--source-dir", str(staging), "--output-dir", str(out),
                *(["--split-platforms"] if split else []))
    zips = [archive for archive in zips if archive.is_file()]
    if not zips:
        raise BuildError(f"blender_ext build wrote no zip to {out}")
    for archive in zips:
        run_cli(cli, "validate", str(archive))
    return zips


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "dist"), help="folder for the zip(s) (default dist/)")
    parser.add_argument("--platform", action="append", choices=list(PLATFORM_TAGS),
                        help="build only for these platforms (repeatable; default all three)")
    parser.add_argument("--no-split", action="store_true", help="one zip holding every platform's wheels")
    parser.add_argument("--wheels", default=str(ROOT / "wheels"), help="wheel cache (default wheels/)")
    parser.add_argument("--update-manifest", action="store_true",
                        help="rewrite blender_manifest.toml's version and wheels list first")
    args = parser.parse_args(argv)
    try:
        zips = build(pathlib.Path(args.out), args.platform or list(PLATFORM_TAGS),
                     split=not args.no_split, cache=pathlib.Path(args.wheels),
                     update_manifest=args.update_manifest)
    except BuildError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for archive in zips:
        print(f"built and validated {archive} ({archive.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

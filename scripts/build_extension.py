"""Build the Blender extension zips: the add-on, its manifest and the bundled wheels.

Usage: python scripts/build_extension.py [--python 3.11|3.13|3.14] [--blender-min V]
                                        [--blender-max V] [--platform linux-x64 ...]
                                        [--out dist]

One zip per Python and platform. Blender embeds one Python: 3.11 in 4.2-5.0 and
3.13 from 5.1 on, and it installs an extension only when the zip holds wheels
for its own Python (a zip holding both sets installs everywhere, but is twice
the size for every user). So each zip declares the Blender versions its
Python serves, and Blender offers only the right one:

    --python 3.11  blender_version_min 4.2.0, blender_version_max 5.1.0 (exclusive)
    --python 3.13  blender_version_min 5.1.0
    --python 3.14  blender_version_min 4.2.0 (no official build: distribution Blenders)

Blenders packaged by a Linux distribution may embed another Python than the
official build of the same version (Debian's 4.3.2 runs Python 3.13, its 5.2.2
Python 3.14): build for that Python and widen the range, e.g.
``--python 3.13 --blender-min 4.2.0``. The default is the Python running this
script. Zips are named ``ddfa_blender-VERSION-pyXY-PLATFORM.zip``, with
``-blenderMIN[-MAX]`` added when the range is not the default.

Layout. An extension zip has ``blender_manifest.toml`` and the add-on's
``__init__.py`` at its top level; the repository keeps the manifest at its top
level and the add-on in ``ddfa_blender/``, so the zip is assembled in a staging
folder: the manifest (``version`` set to ``ddfa_blender.__version__``, the
Blender range, ``wheels`` listing the files below), the contents of
``ddfa_blender/``, and ``wheels/*.whl``.

Wheels. The runtime pins of requirements.lock (markers evaluated for the
target Python) minus numpy (Blender ships it), downloaded from PyPI unmodified
for the target Python and platform (``pip download --only-binary=:all:
--no-deps``: the lock holds every dependency). They are cached in the wheel
cache (env ``DDFA_WHEEL_CACHE``, default ``~/.cache/ddfa-blender/wheels``) with
one stamp per platform and Python recording the pins, so later builds need no
network.

Build. Blender's own extension command line, shipped inside the ``bpy`` wheel
(``bpy/*/scripts/addons_core/bl_pkg/cli/blender_ext.py``), runs ``build
--split-platforms`` (one zip per platform, each with only its wheels), then
``validate`` on every zip. Run this with the Python of the target so the
tooling comes from a bpy of the same Python (there is no bpy for 3.14: a 3.14
zip is validated by the running bpy's tooling). Exits 1 with a one-line
message on any problem.
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
# Blender versions served by default, per Python: (min, max exclusive or None).
BLENDER_RANGES = {
    "3.11": ("4.2.0", "5.1.0"),
    "3.13": ("5.1.0", None),
    "3.14": ("4.2.0", None),
}
# pip's --platform tags per Blender platform (pip also accepts older macOS and universal2).
PLATFORM_TAGS = {
    "linux-x64": ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"],
    "windows-x64": ["win_amd64"],
    "macos-arm64": ["macosx_14_0_arm64"],
}
NOT_BUNDLED = {"numpy"}  # Blender's own


class BuildError(Exception):
    """A build step failed; the message says which and how to fix it."""


def wheel_cache() -> pathlib.Path:
    """The wheel cache shared with scripts/make_venv.py."""
    default = pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache")
    return pathlib.Path(os.environ.get("DDFA_WHEEL_CACHE") or default / "ddfa-blender" / "wheels")


def runtime_pins(python: str, lock_path=LOCK) -> list[str]:
    """``name==version`` of the lock's lines that apply to ``python`` (``3.13``), less numpy."""
    from packaging.markers import Marker

    pins = []
    for line in pathlib.Path(lock_path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement, _, marker = (part.strip() for part in line.partition(";"))
        if marker and not Marker(marker).evaluate({"python_version": python, "python_full_version": python + ".0"}):
            continue
        name = re.split(r"[=<>!~\[ ]", requirement, maxsplit=1)[0]
        if name.lower() not in NOT_BUNDLED:
            pins.append(requirement)
    return pins


def download_wheels(platform: str, python: str, pins: list[str], cache: pathlib.Path) -> list[pathlib.Path]:
    """The wheels of ``pins`` for a Blender ``platform`` and ``python``, from the cache or PyPI."""
    abi = "cp" + python.replace(".", "")
    key = hashlib.sha256("\n".join([python, *pins, *PLATFORM_TAGS[platform]]).encode()).hexdigest()
    stamp = cache / f".extension-{platform}-{abi}.json"
    if stamp.is_file():
        recorded = json.loads(stamp.read_text())
        files = [cache / name for name in recorded.get("files", [])]
        if recorded.get("pins_sha256") == key and all(f.is_file() for f in files):
            return files
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as work:
        command = [
            sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
            "--only-binary=:all:", "--no-deps", "--python-version", python,
            "--implementation", "cp", "--abi", abi, "--abi", "abi3", "--abi", "none",
            *(arg for tag in PLATFORM_TAGS[platform] for arg in ("--platform", tag)),
            "--find-links", str(cache), "-d", work, *pins,
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise BuildError(
                f"pip could not download the {platform} wheels for Python {python} ({detail}); "
                "check the network, or whether every pinned package has a wheel for that Python"
            )
        names = sorted(os.listdir(work))
        for name in names:
            os.replace(os.path.join(work, name), cache / name)
    stamp.write_text(json.dumps({"pins_sha256": key, "files": names}, indent=1))
    return [cache / name for name in names]


def package_version() -> str:
    """``__version__`` of ddfa_blender (read from its source, nothing imported)."""
    match = re.search(r'^__version__ = "([^"]+)"', (PACKAGE / "__init__.py").read_text(), re.M)
    if not match:
        raise BuildError("ddfa_blender/__init__.py has no __version__ line")
    return match.group(1)


def manifest_for(text: str, version: str, blender_min: str, blender_max: str | None,
                 platforms: list[str], wheels: list[str]) -> str:
    """The repository's manifest ``text`` with the values this zip declares."""
    values = {
        "version": f'"{version}"',
        "blender_version_min": f'"{blender_min}"',
        "platforms": "[" + ", ".join(f'"{p}"' for p in platforms) + "]",
    }
    for key, value in values.items():
        text, count = re.subn(rf"^{key} = .*$", f"{key} = {value}", text, count=1, flags=re.M)
        if count != 1:
            raise BuildError(f"blender_manifest.toml needs a `{key} = ...` line")
    if blender_max:
        text = text.replace(
            f'blender_version_min = "{blender_min}"\n',
            f'blender_version_min = "{blender_min}"\nblender_version_max = "{blender_max}"\n',
        )
    listing = "wheels = [\n" + "".join(f'  "./wheels/{name}",\n' for name in wheels) + "]\n"
    return text.replace("\n[permissions]", "\n" + listing + "\n[permissions]", 1)


def stage(staging: pathlib.Path, manifest: str, wheels: list[pathlib.Path]) -> None:
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
    (staging / "blender_manifest.toml").write_text(manifest)


def blender_ext_cli() -> pathlib.Path:
    """Blender's extension command line inside the installed ``bpy`` wheel."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        raise BuildError("the bpy module is not installed: run this with the project's venv (make extension)")
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


def zip_name(version: str, python: str, platform: str, blender_range, default_range) -> str:
    """``ddfa_blender-VERSION-pyXY[-blenderMIN[-MAX]]-PLATFORM.zip`` (see the module doc)."""
    suffix = ""
    if tuple(blender_range) != tuple(default_range):
        suffix = "-blender" + "-".join(v for v in blender_range if v)
    return f"ddfa_blender-{version}-py{python.replace('.', '')}{suffix}-{platform.replace('-', '_')}.zip"


def build(out: pathlib.Path, platforms: list[str], python: str, blender_min=None, blender_max=None,
          cache=None) -> list[pathlib.Path]:
    """Download, stage, build and validate one zip per platform; returns the zips in ``out``."""
    if python not in BLENDER_RANGES:
        raise BuildError(f"no Blender range known for Python {python}: use one of {', '.join(BLENDER_RANGES)}")
    default_range = BLENDER_RANGES[python]
    if blender_min or blender_max:  # a range given in part is open at the other end
        blender_range = (blender_min or default_range[0], blender_max)
    else:
        blender_range = default_range
    cache = pathlib.Path(cache or wheel_cache())
    pins = runtime_pins(python)
    wheels = {p: download_wheels(p, python, pins, cache) for p in platforms}
    names = sorted({wheel.name for found in wheels.values() for wheel in found})
    version = package_version()
    manifest = manifest_for(MANIFEST.read_text(), version, *blender_range, platforms, names)
    cli = blender_ext_cli()
    out.mkdir(parents=True, exist_ok=True)
    zips = []
    with tempfile.TemporaryDirectory(prefix="ddfa-extension-") as work:
        staging, built = pathlib.Path(work) / "ddfa_blender", pathlib.Path(work) / "built"
        stage(staging, manifest, list({wheel.name: wheel for found in wheels.values() for wheel in found}.values()))
        built.mkdir()
        run_cli(cli, "build", "--source-dir", str(staging), "--output-dir", str(built), "--split-platforms")
        for platform in platforms:
            produced = built / f"ddfa_blender-{version}-{platform.replace('-', '_')}.zip"
            if not produced.is_file():
                raise BuildError(f"blender_ext build wrote no zip for {platform}")
            run_cli(cli, "validate", str(produced))
            target = out / zip_name(version, python, platform, blender_range, default_range)
            shutil.move(produced, target)
            zips.append(target)
    return zips


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    running = "%d.%d" % sys.version_info[:2]
    parser.add_argument("--python", default=running, choices=list(BLENDER_RANGES),
                        help=f"Python of the target Blender (default: this one, {running})")
    parser.add_argument("--blender-min", help="lowest Blender version served (default: by Python)")
    parser.add_argument("--blender-max", help="first Blender version not served (default: by Python)")
    parser.add_argument("--out", default=str(ROOT / "dist"), help="folder for the zips (default dist/)")
    parser.add_argument("--platform", action="append", choices=list(PLATFORM_TAGS),
                        help="build only for these platforms (repeatable; default all three)")
    parser.add_argument("--wheels", help="wheel cache (default: env DDFA_WHEEL_CACHE or ~/.cache/ddfa-blender/wheels)")
    args = parser.parse_args(argv)
    try:
        zips = build(pathlib.Path(args.out), args.platform or list(PLATFORM_TAGS), args.python,
                     args.blender_min, args.blender_max, args.wheels)
    except BuildError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for archive in zips:
        print(f"built and validated {archive} ({archive.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

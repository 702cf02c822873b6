"""The extension package: manifest, build + validate with Blender's CLI, install into bpy.

The zip built here is this platform's for the running Python (one zip per
Python: see scripts/build_extension.py), installed into the bpy of the same
Python. NETWORK: the first run downloads its wheels from PyPI (about 170 MB)
into the wheel cache (~/.cache/ddfa-blender/wheels); later runs use the cache.
Without network and cache the build test skips and says so. The install test
extracts the zip into a temporary Blender user folder in a separate process
(bpy state is global), so it takes ~20 s.
"""

import importlib.util
import platform
import subprocess
import sys
import textwrap
import tomllib
import zipfile

import pytest

import ddfa_blender
from conftest import ROOT

SCRIPT = ROOT / "scripts" / "build_extension.py"
PYTHON = "%d.%d" % sys.version_info[:2]
MANIFEST = ROOT / "blender_manifest.toml"
WHEEL_PLATFORM = {  # a wheel file name's platform tag fragment -> Blender platform
    "manylinux": "linux-x64",
    "win_amd64": "windows-x64",
    "macosx": "macos-arm64",
}


def load_build_script():
    spec = importlib.util.spec_from_file_location("build_extension", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def host_platform():
    machine = platform.machine().lower()
    if sys.platform.startswith("linux") and machine in ("x86_64", "amd64"):
        return "linux-x64"
    if sys.platform == "win32" and machine in ("x86_64", "amd64"):
        return "windows-x64"
    if sys.platform == "darwin" and machine == "arm64":
        return "macos-arm64"
    return None


def wheel_platforms(name: str) -> set:
    """Blender platforms a wheel file serves (all of them for a pure wheel)."""
    tags = name[:-4].split("-")[-1]
    if tags == "any":
        return set(WHEEL_PLATFORM.values())
    found = {p for fragment, p in WHEEL_PLATFORM.items() if fragment in tags}
    if "macosx" in tags and not ("arm64" in tags or "universal2" in tags):
        found.discard("macos-arm64")
    return found


def test_manifest_is_complete_and_matches_the_package():
    manifest = tomllib.loads(MANIFEST.read_text())
    assert manifest["schema_version"] == "1.0.0"
    assert manifest["id"] == "ddfa_blender" and manifest["type"] == "add-on"
    assert manifest["version"] == ddfa_blender.__version__
    assert len(manifest["tagline"]) <= 64 and manifest["tagline"][-1] not in ".!?,;:"
    assert manifest["blender_version_min"] == "4.2.0"
    assert manifest["license"] == ["SPDX:MIT"]
    assert manifest["maintainer"] and manifest["name"]
    for permission in ("files", "camera"):
        reason = manifest["permissions"][permission]
        assert reason and len(reason) <= 64 and reason[-1] not in ".!?"
    assert set(manifest["platforms"]) == set(WHEEL_PLATFORM.values())
    assert "wheels" not in manifest  # each zip lists its own (build_extension.py)


@pytest.mark.parametrize("python", ["3.11", "3.13", "3.14"])
def test_runtime_pins_per_python_leave_numpy_to_blender(python):
    pins = load_build_script().runtime_pins(python)
    names = [pin.split("==")[0].lower() for pin in pins]
    assert "numpy" not in names and "mediapipe" in names and "onnxruntime" in names
    assert all(";" not in pin and pin.count("==") == 1 for pin in pins)
    assert len(names) == len(set(names))


def test_zip_declares_the_blender_range_of_its_python():
    build = load_build_script()
    text = MANIFEST.read_text()
    for python, expected in (("3.11", ("4.2.0", "5.1.0")), ("3.13", ("5.1.0", None))):
        manifest = tomllib.loads(build.manifest_for(text, "9.9.9", *build.BLENDER_RANGES[python],
                                                    ["linux-x64"], ["a-1-py3-none-any.whl"]))
        assert (manifest["blender_version_min"], manifest.get("blender_version_max")) == expected
        assert manifest["version"] == "9.9.9" and manifest["platforms"] == ["linux-x64"]
        assert manifest["wheels"] == ["./wheels/a-1-py3-none-any.whl"]
        assert build.zip_name("9.9.9", python, "linux-x64", expected, expected) == (
            f"ddfa_blender-9.9.9-py{python.replace('.', '')}-linux_x64.zip")
    # A distribution's Blender 4.3 on Python 3.13: the range is widened and the name says so.
    assert build.zip_name("9.9.9", "3.13", "linux-x64", ("4.2.0", None), build.BLENDER_RANGES["3.13"]) == (
        "ddfa_blender-9.9.9-py313-blender4.2.0-linux_x64.zip")


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory):
    """This platform's zip, built (and validated by Blender's CLI) by the build script."""
    host = host_platform()
    if host is None:
        pytest.skip(f"no bundled wheels for this platform ({sys.platform} {platform.machine()})")
    build = load_build_script()
    out = tmp_path_factory.mktemp("dist")
    try:
        zips = build.build(out, [host], PYTHON)
    except build.BuildError as err:
        if "pip could not download" in str(err):
            pytest.skip(f"NETWORK needed to download the wheels into wheels/: {err}")
        raise
    assert len(zips) == 1
    return zips[0], host


def test_zip_layout_has_the_manifest_package_and_only_this_platforms_wheels(built_zip):
    archive, host = built_zip
    with zipfile.ZipFile(archive) as zipped:
        names = zipped.namelist()
        manifest = tomllib.loads(zipped.read("blender_manifest.toml").decode())
    assert {"blender_manifest.toml", "__init__.py", "blender/registration.py", "core/take.py"} <= set(names)
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    wheels = [n for n in names if n.startswith("wheels/")]
    assert wheels and all(host in wheel_platforms(n.split("/")[-1]) for n in wheels)
    tag = "cp" + PYTHON.replace(".", "")
    assert all(f"-{tag}-" in n or "abi3" in n or "-none-" in n for n in wheels), wheels
    assert any(f"-{tag}-" in n for n in wheels)
    assert manifest["build"]["generated"]["platforms"] == [host]
    assert manifest["version"] == ddfa_blender.__version__
    expected = load_build_script().BLENDER_RANGES[PYTHON]
    assert (manifest["blender_version_min"], manifest.get("blender_version_max")) == expected


INSTALL_SCRIPT = textwrap.dedent('''
    import sys

    import bpy  # first: it puts Blender's own modules (addon_utils) on the path
    import addon_utils

    result = bpy.ops.extensions.package_install_files(
        filepath=sys.argv[1], repo="user_default", enable_on_install=False)
    assert result == {"FINISHED"}, result
    module = "bl_ext.user_default.ddfa_blender"
    for attempt in range(2):
        addon_utils.enable(module, default_set=True, handle_error=None)
        prefs = bpy.context.preferences.addons[module].preferences
        assert prefs.models_dir == "" and prefs.threads == 0
        assert hasattr(bpy.types.Scene, "ddfa_capture") and hasattr(bpy.types, "DDFA_PT_capture")
        assert bpy.ops.ddfa.prepare_models.poll()  # registered; Capture waits for footage
        extension = sys.modules[module + ".blender.preferences"]
        assert extension.is_extension()
        assert "extensions" in extension.default_models_dir()
        addon_utils.disable(module, default_set=True, handle_error=None)
        assert not hasattr(bpy.types.Scene, "ddfa_capture")
        assert not hasattr(bpy.types.Object, "ddfa_capture")
        assert not hasattr(bpy.types.WindowManager, "ddfa_job")
        assert not hasattr(bpy.types, "DDFA_PT_capture") and not hasattr(bpy.types, "DDFA_OT_capture")
    print("installed, registered and unregistered twice")
''')


def test_built_zip_installs_and_registers_twice_in_bpy(built_zip, tmp_path):
    pytest.importorskip("bpy", reason="the bpy module (Blender as a Python module) is not installed")
    archive, _ = built_zip
    env = {"BLENDER_USER_RESOURCES": str(tmp_path / "user"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", INSTALL_SCRIPT, str(archive)],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "registered and unregistered twice" in result.stdout


REFUSE_SCRIPT = textwrap.dedent('''
    import os
    import sys

    import bpy

    bpy.ops.extensions.package_install_files(filepath=sys.argv[1], repo="user_default", enable_on_install=False)
    installed = os.path.join(os.environ["BLENDER_USER_RESOURCES"], "extensions", "user_default", "ddfa_blender")
    print("installed" if os.path.isdir(installed) else "refused")
''')


def test_the_other_pythons_zip_is_refused_by_blender(tmp_path):
    """A zip for the other official Python declares a Blender range this bpy is outside of."""
    pytest.importorskip("bpy", reason="the bpy module (Blender as a Python module) is not installed")
    host = host_platform()
    if host is None or PYTHON not in ("3.11", "3.13"):
        pytest.skip(f"no official zip for this platform and Python ({sys.platform}, {PYTHON})")
    build = load_build_script()
    other = {"3.11": "3.13", "3.13": "3.11"}[PYTHON]
    try:
        (archive,) = build.build(tmp_path / "dist", [host], other)
    except build.BuildError as err:
        if "pip could not download" in str(err):
            pytest.skip(f"NETWORK needed to download the wheels: {err}")
        raise
    env = {"BLENDER_USER_RESOURCES": str(tmp_path / "user"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", REFUSE_SCRIPT, str(archive)],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.stdout.strip().splitlines()[-1:] == ["refused"], result.stdout[-2000:] + result.stderr[-2000:]
    assert "version" in result.stdout + result.stderr

"""The extension package: manifest, build + validate with Blender's CLI, install into bpy.

NETWORK: the first run downloads the bundled wheels from PyPI (about 450 MB
for the three platforms, ~20 s here) into the git-ignored wheels/ cache;
later runs use the cache. Without network and cache the build test skips and
says so. The install test extracts this platform's zip (~160 MB) into a
temporary Blender user folder in a separate process (bpy state is global), so
it takes ~20 s.
"""

import importlib.util
import platform
import re
import subprocess
import sys
import textwrap
import tomllib
import zipfile

import pytest

import ddfa_blender
from conftest import ROOT

SCRIPT = ROOT / "scripts" / "build_extension.py"
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
    pins = load_build_script().runtime_pins()
    assert not any(p.lower().startswith("numpy") for p in pins)
    names = [w.removeprefix("./wheels/") for w in manifest["wheels"]]
    assert all(w.startswith("./wheels/") and w.endswith(".whl") for w in manifest["wheels"])
    for pin in pins:
        project, version = pin.split("==")
        prefix = re.sub(r"[-.]+", "_", project).lower() + "-" + version + "-"
        wheels = [n for n in names if n.lower().startswith(prefix)]
        served = set().union(*(wheel_platforms(n) for n in wheels)) if wheels else set()
        assert served == set(manifest["platforms"]), f"{pin}: wheels for {sorted(served)}"
        assert all("cp311" in n or "abi3" in n or "none-any" in n for n in wheels), wheels


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory):
    """This platform's zip, built (and validated by Blender's CLI) by the build script."""
    host = host_platform()
    if host is None:
        pytest.skip(f"no bundled wheels for this platform ({sys.platform} {platform.machine()})")
    build = load_build_script()
    out = tmp_path_factory.mktemp("dist")
    try:
        zips = build.build(out, [host])
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
    assert manifest["build"]["generated"]["platforms"] == [host]
    assert manifest["version"] == ddfa_blender.__version__


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
        assert bpy.ops.ddfa.capture.poll()
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

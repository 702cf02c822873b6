"""Processes using the bpy module exit cleanly, and Blender shuts down, in every supported version.

On Blender 4.2-4.5 as a module, Blender shuts down only if Python frees the
``bpy`` module at exit; otherwise 4.2 dies with SIGSEGV and 4.5 hangs after
all the work is done (see ddfa_blender/blender/module_exit.py). Each case
runs in its own interpreter with a private TMPDIR: a clean shutdown exits 0
and deletes Blender's session folder (``blender_*``) from it.
"""

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("bpy", reason="the bpy module (Blender as a Python module) is not installed")

from conftest import ROOT  # noqa: E402

SCRIPTS = {
    # The add-on registered and never unregistered (a user's script, or a test that forgot).
    "registered": """
        import ddfa_blender
        ddfa_blender.register()
    """,
    # MediaPipe loaded (its ctypes structures stay in ctypes' cache until after Python's
    # module clean-up), then a glTF round trip of an animated mesh with a material: the
    # exporter's typing aliases then tie the bpy module to that cache.
    "gltf_round_trip": """
        import bpy
        from ddfa_blender.blender import retarget
        from ddfa_blender.core import mediapipe_tasks

        mediapipe_tasks.vision()
        bpy.ops.wm.read_factory_settings(use_empty=True)
        bpy.ops.mesh.primitive_cube_add()
        cube = bpy.context.object
        material = bpy.data.materials.new("skin")
        material.use_nodes = True
        cube.data.materials.append(material)
        cube.shape_key_add(name="Basis")
        key = cube.shape_key_add(name="jawOpen")
        for frame, value in ((1, 0.0), (10, 1.0)):
            key.value = value
            key.keyframe_insert("value", frame=frame)
            cube.rotation_euler.x = value
            cube.keyframe_insert("rotation_euler", frame=frame)
        retarget.export_animation([cube], PATH, "GLB")
        assert len(retarget.import_animation(PATH)) == 1
        bpy.ops.wm.read_factory_settings(use_empty=True)
    """,
}


@pytest.mark.parametrize("case", sorted(SCRIPTS))
def test_process_exits_cleanly_and_blender_shuts_down(tmp_path, case):
    temp = tmp_path / "tmp"
    temp.mkdir()
    script = (f"import sys\nsys.path.insert(0, {str(ROOT)!r})\nPATH = {str(tmp_path / 'out.glb')!r}\n"
              + textwrap.dedent(SCRIPTS[case]) + "print('done', flush=True)\n")
    try:
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                                timeout=240, cwd=tmp_path, env={**os.environ, "TMPDIR": str(temp)})
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"{case}: the process did not exit within {err.timeout} s (Blender hangs at exit)")
    assert result.stdout.rstrip().endswith("done"), result.stdout[-2000:] + result.stderr[-2000:]
    assert result.returncode == 0, f"exit status {result.returncode}: {result.stderr[-2000:]}"
    assert "Not freed memory blocks" not in result.stderr  # Blender's leak report: it never shut down
    assert sorted(p.name for p in temp.iterdir() if p.name.startswith("blender_")) == []



def test_pure_modules_of_the_blender_layer_import_without_bpy():
    """The exit arrangement made on the package's import must not import bpy itself."""
    script = (f"import sys\nsys.path.insert(0, {str(ROOT)!r})\nsys.modules['bpy'] = None\n"
              "from ddfa_blender.blender import bake_channels, progress\nprint('ok')\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]

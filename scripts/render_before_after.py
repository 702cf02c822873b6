"""Render the before/after picture: footage frame | captured BFM mesh | retargeted ICT avatar.

Usage:
    python scripts/render_before_after.py [--video CLIP] [--frames 330 386]
        [--avatar AVATAR.blend:Object] [--models DIR] [--output docs/before_after.png]
    blender -b --factory-startup --python-exit-code 1 -P scripts/render_before_after.py -- ...

Captures the clip with MediaPipe's face landmarker, bakes it
(:func:`ddfa_blender.blender.headless.write_blend`), retargets it onto the
avatar (:func:`ddfa_blender.blender.retarget.retarget_blend`), then renders
each chosen source frame with Workbench: the captured face from the capture
camera (cropped like the footage around the face) and the avatar from a
camera in front of it. One row per frame. Exits 1 with a one-line message on
a problem.
"""

import argparse
import os
import pathlib
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ddfa_blender.core.errors import CaptureError  # noqa: E402

TILE = 360
SKIN = (0.80, 0.62, 0.52, 1.0)
# Eye shells of the ICT head that real shaders draw see-through; Workbench would not.
HIDDEN_MATERIALS = ("M_LacrimalFluid", "M_EyeBlend", "M_EyeOcclusion")
EYES = (("M_ScleraLeft", "M_IrisLeft"), ("M_ScleraRight", "M_IrisRight"))
COLOURS = {"M_Face": SKIN, "M_BackHead": SKIN, "M_ScleraLeft": (0.92, 0.92, 0.9, 1.0),
           "M_ScleraRight": (0.92, 0.92, 0.9, 1.0), "M_IrisLeft": (0.25, 0.35, 0.3, 1.0),
           "M_IrisRight": (0.25, 0.35, 0.3, 1.0)}


def parse_args(argv):
    shared = ROOT.parent / "shared" / "data"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", default=str(shared / "video" / "talking_head_640x360.mp4"))
    parser.add_argument("--frames", type=int, nargs="+", default=[330, 386],
                        help="source frames to show, one row each (default: a laugh and a blink)")
    parser.add_argument("--avatar", default=f"{shared / 'avatars' / 'ict_facekit_arkit.blend'}:ICT_Head")
    parser.add_argument("--models", help="prepared models folder (default: models/ or $DDFA_MODELS)")
    parser.add_argument("--output", default=str(ROOT / "docs" / "before_after.png"))
    return parser.parse_args(argv)


def capture_and_retarget(args, folder):
    """Capture, bake and retarget into ``folder``; (take, retargeted .blend path, result)."""
    from ddfa_blender.blender import headless, retarget
    from ddfa_blender.core.engine import CaptureOptions, capture
    from ddfa_blender.core.face_landmarker import make_channels
    from ddfa_blender.core.model_setup import default_models_dir
    from ddfa_blender.core.smoothing import PRESETS

    models = args.models or str(default_models_dir())
    take = capture(args.video, CaptureOptions(models_dir=models, channels=make_channels(models)))
    take_path = os.path.join(folder, "take.npz")
    take.save(take_path)
    captured = os.path.join(folder, "captured.blend")
    headless.write_blend(take, captured, models_dir=models, smoothing=PRESETS["light"], take_path=take_path)
    output = os.path.join(folder, "retargeted.blend")
    result = retarget.retarget_blend(captured, take, args.avatar, output_path=output, models_dir=models)
    return take, output, result


def render_rows(take, blend, frames, folder) -> list:
    """Per frame: (footage crop, captured render crop, avatar render), BGR uint8 images."""
    import bpy
    import cv2
    import mathutils

    from ddfa_blender.blender.retarget import find_captured_face

    bpy.ops.wm.open_mainfile(filepath=blend)
    scene = bpy.context.scene
    captured = find_captured_face(0)
    avatar = next(o for o in scene.objects if o.type == "MESH" and o is not captured)
    for material in avatar.data.materials:
        if material is not None and material.name in COLOURS:
            material.diffuse_color = COLOURS[material.name]
    _hide_faces(avatar, HIDDEN_MATERIALS)
    render = scene.render
    render.engine = "BLENDER_WORKBENCH"
    render.film_transparent = True
    render.image_settings.color_mode = "RGBA"
    render.image_settings.file_format = "PNG"
    shading = scene.display.shading
    shading.light = "STUDIO"
    shading.show_cavity = True
    capture_camera = scene.camera
    data = bpy.data.cameras.new("avatar_view")
    data.lens = 85.0
    avatar_camera = bpy.data.objects.new("avatar_view", data)
    scene.collection.objects.link(avatar_camera)

    video = cv2.VideoCapture(take.source)
    origin = int(take.frame.min())
    rows = []
    for number in frames:
        row = int(number - origin)
        if not 0 <= row < len(take) or not take.valid[row]:
            raise CaptureError(f"Frame {number} has no tracked face; choose another --frames value.")
        scene.frame_set(scene.frame_start + row)
        video.set(cv2.CAP_PROP_POS_FRAMES, number)
        ok, footage = video.read()
        if not ok:
            raise CaptureError(f"Cannot read frame {number} of {take.source}.")
        box = _square(take.roi[row], footage.shape, 0.85)

        # Captured face, from the capture camera, the same crop as the footage.
        scene.camera = capture_camera
        render.resolution_x, render.resolution_y = take.image_size
        shading.color_type = "SINGLE"
        shading.single_color = SKIN[:3]
        avatar.hide_render, captured.hide_render = True, False
        mesh_png = _render(scene, os.path.join(folder, f"mesh_{number}.png"))

        # Avatar, from a camera in front of its face.
        centre = sum((avatar.matrix_world @ mathutils.Vector(c) for c in avatar.bound_box), mathutils.Vector()) / 8
        avatar_camera.location = centre + mathutils.Vector((0.0, -0.62, 0.06))
        avatar_camera.rotation_euler = (1.5708, 0.0, 0.0)
        scene.camera = avatar_camera
        render.resolution_x = render.resolution_y = 720
        shading.color_type = "MATERIAL"
        avatar.hide_render, captured.hide_render = False, True
        avatar_png = _render(scene, os.path.join(folder, f"avatar_{number}.png"))

        mesh, face = (_on_background(cv2.imread(p, cv2.IMREAD_UNCHANGED)) for p in (mesh_png, avatar_png))
        rows.append((_crop(footage, box), _crop(mesh, box), face))
    video.release()
    return rows


def _hide_faces(obj, material_names) -> None:
    """Hide the eye shells and the corneas (the sclera in front of each iris) (Mask modifier)."""
    import numpy as np

    names = [m.name if m is not None else "" for m in obj.data.materials]
    indices = {i for i, name in enumerate(names) if name in material_names}
    coords = np.array([v.co for v in obj.data.vertices])
    by_material = {}
    for polygon in obj.data.polygons:
        by_material.setdefault(names[polygon.material_index], set()).update(polygon.vertices)
    hidden = set()
    for polygon in obj.data.polygons:
        if polygon.material_index in indices:
            hidden.update(polygon.vertices)
    for sclera, iris in EYES:
        if sclera not in by_material or iris not in by_material:
            continue
        iris_points = coords[sorted(by_material[iris])]
        centre = iris_points.mean(axis=0)
        ball = coords[sorted(by_material[sclera])].mean(axis=0)
        forward = (centre - ball) / np.linalg.norm(centre - ball)
        radius = np.linalg.norm(np.cross(iris_points - centre, forward), axis=1).max()
        for index in by_material[sclera]:
            offset = coords[index] - ball
            if offset @ forward > 0 and np.linalg.norm(np.cross(offset, forward)) < 1.05 * radius:
                hidden.add(index)
    if not hidden:
        return
    group = obj.vertex_groups.new(name="visible")
    group.add([v.index for v in obj.data.vertices if v.index not in hidden], 1.0, "REPLACE")
    modifier = obj.modifiers.new("hide eye shells", "MASK")
    modifier.vertex_group = group.name


def _render(scene, path: str) -> str:
    import bpy

    scene.render.filepath = path
    bpy.ops.render.render(write_still=True)
    return path


def _on_background(rgba):
    """An RGBA render composited over a light grey background (BGR uint8)."""
    import numpy as np

    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    blended = rgba[..., :3].astype(np.float32) * alpha + 228.0 * (1.0 - alpha)
    return blended.round().astype(np.uint8)


def _square(roi, shape, scale):
    """An integer square box around a tracker ROI, scaled and kept inside the image."""
    x0, y0, x1, y1 = roi
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, scale * (x1 - x0) / 2
    half = min(half, cx, cy, shape[1] - cx, shape[0] - cy)
    return int(cx - half), int(cy - half), int(cx + half), int(cy + half)


def _crop(image, box):
    x0, y0, x1, y1 = box
    return image[y0:y1, x0:x1]


def compose(rows, output) -> None:
    """Rows of three tiles with column titles, written as PNG."""
    import cv2
    import numpy as np

    titles = ("footage", "captured 3DDFA-V2 mesh", "ICT FaceKit avatar (ARKit keys)")
    header = np.full((40, 3 * TILE, 3), 255, dtype=np.uint8)
    for i, title in enumerate(titles):
        cv2.putText(header, title, (i * TILE + 10, 27), cv2.FONT_HERSHEY_SIMPLEX, 0.62, (30, 30, 30), 1, cv2.LINE_AA)
    lines = [header]
    for tiles in rows:
        lines.append(np.hstack([cv2.resize(t, (TILE, TILE), interpolation=cv2.INTER_AREA) for t in tiles]))
    folder = os.path.dirname(os.path.abspath(output))
    os.makedirs(folder, exist_ok=True)
    if not cv2.imwrite(output, np.vstack(lines)):
        raise CaptureError(f"Cannot write {output}.")


def main(argv) -> int:
    args = parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="ddfa_before_after_") as folder:
            take, blend, result = capture_and_retarget(args, folder)
            rows = render_rows(take, blend, args.frames, folder)
            compose(rows, args.output)
    except CaptureError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print("; ".join(result.report.lines()))
    print(f"wrote {args.output}")
    return 0


def script_arguments() -> list:
    """Arguments after ``--`` when Blender runs the script, else all of them."""
    if "--" in sys.argv:
        return sys.argv[sys.argv.index("--") + 1:]
    return sys.argv[1:]


if __name__ == "__main__":
    sys.exit(main(script_arguments()))

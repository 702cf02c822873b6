"""Render one frame of a baked .blend with Workbench and put it next to the footage.

Usage:
    python scripts/render_preview.py --blend out/demo.blend --frame 40 --output out/preview.png
    blender -b --factory-startup --python-exit-code 1 -P scripts/render_preview.py -- \
        --blend out/demo.blend --frame 40 --output out/preview.png

The output PNG holds three panels side by side: the footage frame (from the
scene's movie clip), the face rendered from the capture camera, and the render
laid over the footage. Without OpenCV only the render is written. Exits 1 with
a one-line message on any problem.
"""

import argparse
import os
import shutil
import sys
import tempfile


def parse_args(argv):
    if "--" in argv:  # inside blender: our arguments follow "--"
        argv = argv[argv.index("--") + 1:]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blend", required=True, help="a .blend written by capture.py --output")
    parser.add_argument("--frame", type=int, default=None, help="scene frame (default: middle)")
    parser.add_argument("--output", required=True, help="PNG to write")
    parser.add_argument("--width", type=int, default=None, help="render width (default: footage)")
    return parser.parse_args(argv)


def render_frame(blend_path: str, frame, png_path: str, width=None) -> dict:
    """Render ``frame`` of ``blend_path`` from its camera to ``png_path`` (RGBA, transparent film).

    Returns the footage to compare with: ``{"path", "frame_index", "frame"}``
    (``path`` None when the scene has no movie clip).
    """
    import bpy

    bpy.ops.wm.open_mainfile(filepath=os.path.abspath(blend_path))
    scene = bpy.context.scene
    if scene.camera is None:
        raise RuntimeError(f"{blend_path} has no camera to render from")
    frame = (scene.frame_start + scene.frame_end) // 2 if frame is None else frame
    scene.frame_set(frame)
    render = scene.render
    render.engine = "BLENDER_WORKBENCH"
    render.film_transparent = True
    if width:
        render.resolution_percentage = max(1, round(100 * width / render.resolution_x))
    shading = scene.display.shading
    shading.light = "STUDIO"
    shading.color_type = "SINGLE"
    shading.single_color = (0.8, 0.62, 0.52)
    shading.show_cavity = True
    render.image_settings.file_format = "PNG"
    render.image_settings.color_mode = "RGBA"
    render.filepath = os.path.abspath(png_path)
    bpy.ops.render.render(write_still=True)
    clip = scene.active_clip
    if clip is None:
        return {"path": None, "frame_index": None, "frame": frame}
    index = frame - clip.frame_start + clip.frame_offset  # 0-based index into the video
    return {"path": bpy.path.abspath(clip.filepath), "frame_index": index, "frame": frame}


def compose(render_png: str, footage: dict, output_png: str) -> None:
    """Footage | render | render over footage, side by side, as ``output_png``."""
    import cv2
    import numpy as np

    face = cv2.imread(render_png, cv2.IMREAD_UNCHANGED)
    capture = cv2.VideoCapture(footage["path"])
    capture.set(cv2.CAP_PROP_POS_FRAMES, footage["frame_index"])
    ok, image = capture.read()
    capture.release()
    if not ok:
        raise RuntimeError(f"cannot read frame {footage['frame_index']} of {footage['path']}")
    image = cv2.resize(image, (face.shape[1], face.shape[0]), interpolation=cv2.INTER_AREA)
    alpha = face[..., 3:4].astype(np.float32) / 255.0
    colour = face[..., :3].astype(np.float32)
    on_grey = colour * alpha + 40.0 * (1.0 - alpha)
    over = colour * alpha * 0.75 + image.astype(np.float32) * (1.0 - alpha * 0.75)
    panels = np.concatenate([image, on_grey.astype(np.uint8), over.astype(np.uint8)], axis=1)
    if not cv2.imwrite(output_png, panels):
        raise RuntimeError(f"cannot write {output_png}")


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory() as work:
        render_png = os.path.join(work, "render.png")
        try:
            footage = render_frame(args.blend, args.frame, render_png, args.width)
            try:
                import cv2  # noqa: F401
            except ImportError:
                footage["path"] = None
            if footage["path"]:
                compose(render_png, footage, args.output)
            else:
                shutil.move(render_png, args.output)
        except (RuntimeError, OSError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    print(f"wrote {args.output} (frame {footage['frame']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

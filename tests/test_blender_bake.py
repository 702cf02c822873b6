"""The bake, through bpy: write_blend's .blend opened again and checked against the take.

Synthetic takes and a small synthetic face model keep these fast (the real
38,365-vertex mesh is checked in test_blender_capture.py). bpy state is global
per process: every test starts from an empty factory scene.
"""

import os

import numpy as np
import pytest

bpy = pytest.importorskip("bpy", reason="the bpy module (Blender as a Python module) is not installed")

from ddfa_blender.blender import animation, bake, bake_channels, headless  # noqa: E402
from ddfa_blender.core.errors import CaptureError  # noqa: E402
from ddfa_blender.core.take import parse_tracks  # noqa: E402
from conftest import take_action_names  # noqa: E402
from test_blender_synthetic import synthetic_face_model, synthetic_take, write_face_model  # noqa: E402

EXPR_NAMES = [f"exp_{k:02d}" for k in range(10)]


@pytest.fixture(autouse=True)
def empty_scene():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    yield
    bpy.ops.wm.read_factory_settings(use_empty=True)


@pytest.fixture
def synthetic_models(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    return write_face_model(folder)


def open_blend(path):
    bpy.ops.wm.open_mainfile(filepath=str(path))
    return bpy.context.scene


def keys(id_data, data_path, index=0):
    """(frames, values) of one F-curve animating ``id_data``."""
    fcurve = animation.animation_channels(id_data).fcurves.find(data_path, index=index)
    assert fcurve is not None, f"{id_data.name} has no F-curve {data_path}[{index}]"
    return animation.fcurve_values(fcurve)


def write(take, tmp_path, models, name="take.blend", **options):
    output = tmp_path / name
    headless.write_blend(take, output, models_dir=models, **options)
    return open_blend(output)


def test_written_blend_has_the_face_keys_frames_and_timing(tmp_path, synthetic_models):
    take = synthetic_take(n=40, fps=30.0)
    scene = write(take, tmp_path, synthetic_models, take_path=str(tmp_path / "t1.npz"))
    face = bpy.data.objects["t1.face0"]
    camera = bpy.data.objects["t1.camera"]
    assert scene.camera == camera and camera.type == "CAMERA"
    assert len(face.data.vertices) == synthetic_face_model().n_vertices
    assert all(len(p.vertices) == 3 for p in face.data.polygons)
    assert face.data.uv_layers.active is not None
    blocks = face.data.shape_keys.key_blocks
    assert [b.name for b in blocks] == ["Basis", *EXPR_NAMES]
    assert (scene.render.fps, scene.render.fps_base) == (30, 1.0)
    assert (scene.frame_start, scene.frame_end) == (1, 40)
    assert sorted(a.name for a in bpy.data.actions) == take_action_names("t1")
    frames, _ = keys(face, "location", 0)
    np.testing.assert_array_equal(frames, np.arange(1, 41))


def test_shape_key_values_are_the_coefficients_over_the_stored_scale(tmp_path, synthetic_models):
    take = synthetic_take(n=30)
    write(take, tmp_path, synthetic_models)
    face = bpy.data.objects["take.face0"]
    scale = np.array(face[bake.EXPRESSION_SCALE_PROPERTY])
    for k, name in enumerate(EXPR_NAMES):
        frames, values = keys(face.data.shape_keys, f'key_blocks["{name}"].value')
        np.testing.assert_allclose(values * scale[k], take.param[:, 52 + k], rtol=1e-5, atol=1e-6)
        block = face.data.shape_keys.key_blocks[name]
        assert (block.slider_min, block.slider_max) == (-1.0, 1.0)
        assert np.abs(values).max() <= 1.0 + 1e-6
    # The curves drive the keys: evaluate a frame.
    bpy.context.scene.frame_set(12)
    value = face.data.shape_keys.key_blocks["exp_04"].value
    assert value * scale[4] == pytest.approx(take.param[11, 56], rel=1e-4)


def test_expression_key_is_the_basis_column_times_the_scale(tmp_path, synthetic_models):
    write(synthetic_take(n=20), tmp_path, synthetic_models)
    face = bpy.data.objects["take.face0"]
    blocks = face.data.shape_keys.key_blocks
    scale = np.array(face[bake.EXPRESSION_SCALE_PROPERTY])
    n = len(face.data.vertices)
    basis, key = np.empty(3 * n, np.float32), np.empty(3 * n, np.float32)
    blocks["Basis"].data.foreach_get("co", basis)
    blocks["exp_02"].data.foreach_get("co", key)
    expected = bake_channels.expression_offsets(synthetic_face_model(), scale)[2]
    np.testing.assert_allclose((key - basis).reshape(-1, 3), expected, atol=1e-7)


def test_identity_is_the_robust_aggregate_and_ignores_an_outlier(tmp_path, synthetic_models):
    take = synthetic_take(n=25)
    take.param[5, 12:52] = 5e6  # one wild frame
    write(take, tmp_path, synthetic_models)
    face = bpy.data.objects["take.face0"]
    n = len(face.data.vertices)
    basis = np.empty(3 * n, np.float32)
    face.data.shape_keys.key_blocks["Basis"].data.foreach_get("co", basis)
    model = synthetic_face_model()
    median = np.median(take.param[:, 12:52], axis=0)
    bfm = model.vertices(median).astype(np.float64)
    expected = np.stack([bfm[:, 0], -bfm[:, 2], bfm[:, 1]], -1) * 1e-6
    np.testing.assert_allclose(basis.reshape(-1, 3), expected, atol=1e-7)
    with_mean = model.vertices(take.param[:, 12:52].mean(axis=0)).astype(np.float64)
    assert np.abs(with_mean - bfm).max() * 1e-6 > 1e-3  # the mean would have moved it


def test_head_quaternions_are_continuous_and_match_the_pose(tmp_path, synthetic_models):
    take = synthetic_take(n=60, yaw_amplitude=3.0)  # turns past 180 degrees
    write(take, tmp_path, synthetic_models)
    face = bpy.data.objects["take.face0"]
    quaternion = np.stack([keys(face, "rotation_quaternion", i)[1] for i in range(4)], -1)
    assert np.sum(quaternion[1:] * quaternion[:-1], axis=1).min() > 0.9
    expected = bake_channels.track_channels(take).rotation
    np.testing.assert_allclose(quaternion, expected, atol=1e-6)
    assert face.rotation_mode == "QUATERNION"


def test_fractional_frame_rate_and_start_frame(tmp_path, synthetic_models):
    take = synthetic_take(n=24, fps=24000 / 1001)
    scene = write(take, tmp_path, synthetic_models, start_frame=101)
    assert (scene.render.fps, scene.render.fps_base) == (24, pytest.approx(1.001))
    assert scene.render.fps / scene.render.fps_base == pytest.approx(24000 / 1001)
    assert (scene.frame_start, scene.frame_end) == (101, 124)
    frames, _ = keys(bpy.data.objects["take.face0"], "location", 2)
    assert (frames[0], frames[-1]) == (101, 124)


@pytest.mark.parametrize("missing", ["hold", "gap"])
def test_frames_without_a_face_hold_or_gap_never_the_origin(tmp_path, synthetic_models, missing):
    gap = (10, 11, 12)
    take = synthetic_take(n=30, invalid=gap)
    scene = write(take, tmp_path, synthetic_models, missing=missing)
    face = bpy.data.objects["take.face0"]
    frames, _ = keys(face, "location", 0)
    keyed = {int(f) - 1 for f in frames}
    assert keyed == (set(range(30)) - set(gap) if missing == "gap" else set(range(30)))
    scene.frame_set(10)
    before = np.array(face.location)
    for frame in (11, 12, 13):  # scene frames of source frames 10, 11, 12
        scene.frame_set(frame)
        assert np.linalg.norm(face.location) > 0.5  # never at the origin
        if missing == "hold":
            np.testing.assert_allclose(face.location, before, atol=1e-6)
    if missing == "gap":
        scene.frame_set(12)
        middle = np.array(face.location)
        scene.frame_set(14)
        after = np.array(face.location)
        assert np.all(np.minimum(before, after) - 1e-6 <= middle)
        assert np.all(middle <= np.maximum(before, after) + 1e-6)


def test_key_camera_moves_the_camera_around_a_still_head(tmp_path, synthetic_models):
    take = synthetic_take(n=20)
    scene = write(take, tmp_path, synthetic_models, key_camera=True)
    face, camera = bpy.data.objects["take.face0"], bpy.data.objects["take.camera"]
    assert animation.animation_channels(face).fcurves.find("location", index=0) is None
    frames, _ = keys(camera, "location", 1)
    assert len(frames) == 20
    scene.frame_set(7)
    head_in_camera = camera.matrix_world.inverted() @ face.matrix_world
    write(take, tmp_path, synthetic_models, name="heads.blend")
    scene = bpy.context.scene
    scene.frame_set(7)
    face, camera = bpy.data.objects["take.face0"], bpy.data.objects["take.camera"]
    expected = camera.matrix_world.inverted() @ face.matrix_world
    # Same view of the head (head mode adds a uniform scale about the camera: compare directions).
    np.testing.assert_allclose(
        np.array(head_in_camera.to_3x3().normalized()), np.array(expected.to_3x3().normalized()), atol=1e-5
    )
    direction = np.array(head_in_camera.translation.normalized())
    np.testing.assert_allclose(direction, np.array(expected.translation.normalized()), atol=1e-5)


def test_one_object_per_face_track(tmp_path, synthetic_models):
    take = synthetic_take(n=15, tracks=2)
    write(take, tmp_path, synthetic_models)
    assert {o.name for o in bpy.data.objects if o.type == "MESH"} == {"take.face0", "take.face1"}
    assert sorted(a.name for a in bpy.data.actions) == take_action_names("take", "take.face1")
    with pytest.raises(CaptureError, match="single-face"):
        headless.write_blend(take, tmp_path / "cam.blend", models_dir=synthetic_models, key_camera=True)


def test_baking_again_into_the_same_object_replaces_its_animation(synthetic_models):
    face_model = synthetic_face_model()
    scene = bpy.context.scene
    first = synthetic_take(n=30, seed=1, source="/x/clip.mp4")
    obj = bake.bake_take(scene, first, face_model=face_model)
    second = synthetic_take(n=12, seed=2, source="/x/clip.mp4")
    again = bake.bake_take(scene, second, face_model=face_model, target=obj)
    assert again == obj
    assert sorted(a.name for a in bpy.data.actions) == take_action_names("clip")
    assert {o.name for o in bpy.data.objects} == {"clip.face0", "clip.camera", "clip.origin"}
    frames, values = keys(obj.data.shape_keys, 'key_blocks["exp_00"].value')
    assert len(frames) == 12
    scale = obj[bake.EXPRESSION_SCALE_PROPERTY][0]
    np.testing.assert_allclose(values * scale, second.param[:, 52], rtol=1e-5, atol=1e-6)
    assert len(animation.animation_channels(obj).fcurves) == 10
    assert (scene.frame_start, scene.frame_end) == (1, 12)


def test_a_failed_bake_leaves_the_scene_as_it_was(synthetic_models, monkeypatch):
    face_model = synthetic_face_model()
    scene = bpy.context.scene
    obj = bake.bake_take(scene, synthetic_take(n=20, source="/x/a.mp4"), face_model=face_model)
    before_objects = sorted(o.name for o in bpy.data.objects)
    before_actions = sorted(a.name for a in bpy.data.actions)
    coords = np.empty(3 * len(obj.data.vertices), np.float32)
    obj.data.shape_keys.key_blocks["exp_03"].data.foreach_get("co", coords)
    original_key = animation.key_channel

    def failing(channels, data_path, *args, **kwargs):
        if data_path.startswith("key_blocks"):
            raise RuntimeError("disk full")
        return original_key(channels, data_path, *args, **kwargs)

    monkeypatch.setattr(animation, "key_channel", failing)
    for target in (None, obj):  # a new object, and baking again in place
        with pytest.raises(RuntimeError, match="disk full"):
            bake.bake_take(scene, synthetic_take(n=9, seed=4, source="/x/b.mp4"),
                           face_model=face_model, target=target)
        assert sorted(o.name for o in bpy.data.objects) == before_objects
        assert sorted(a.name for a in bpy.data.actions) == before_actions
        assert len(bpy.data.meshes) == 1 and len(bpy.data.cameras) == 1
        assert animation.animation_channels(obj).fcurves.find("location", index=0) is not None
        after = np.empty_like(coords)
        obj.data.shape_keys.key_blocks["exp_03"].data.foreach_get("co", after)
        np.testing.assert_array_equal(after, coords)
        assert (scene.frame_start, scene.frame_end) == (1, 20)


def test_footage_is_the_camera_background(tmp_path, synthetic_models, shared_dir):
    video = shared_dir / "data" / "video" / "single_face.mp4"
    write(synthetic_take(n=10), tmp_path, synthetic_models, footage=str(video), start_frame=5)
    camera = bpy.data.objects["take.camera"].data
    assert camera.show_background_images
    clip = camera.background_images[0].clip
    assert os.path.samefile(bpy.path.abspath(clip.filepath), video)
    assert clip.frame_start == 5 and clip.frame_offset == 0
    assert bpy.context.scene.active_clip == clip


# -- errors -------------------------------------------------------------------------


def test_empty_take_is_refused_and_nothing_is_written(tmp_path, synthetic_models):
    empty = synthetic_take(n=5).rows(np.zeros(5, dtype=bool))
    with pytest.raises(CaptureError, match="empty"):
        headless.write_blend(empty, tmp_path / "e.blend", models_dir=synthetic_models)
    with pytest.raises(CaptureError, match="no frame with a face"):
        headless.write_blend(synthetic_take(n=5, invalid=range(5)), tmp_path / "e.blend",
                             models_dir=synthetic_models)
    assert os.listdir(tmp_path) == ["models"]


def test_output_that_cannot_be_written(tmp_path, synthetic_models):
    with pytest.raises(CaptureError, match="does not exist"):
        headless.write_blend(synthetic_take(n=5), tmp_path / "nope" / "x.blend", models_dir=synthetic_models)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root): permissions not enforced")
        with pytest.raises(CaptureError, match="not writable"):
            headless.write_blend(synthetic_take(n=5), locked / "x.blend", models_dir=synthetic_models)
        assert os.listdir(locked) == []
    finally:
        locked.chmod(0o700)


def test_failed_save_is_reported(tmp_path, synthetic_models):
    """/proc passes the permission check for root but refuses new files: the save itself fails."""
    if not os.path.isdir("/proc/self") or not os.access("/proc", os.W_OK):
        pytest.skip("needs Linux /proc and a user it reports as writable (root)")
    with pytest.raises(CaptureError, match="choose another output"):
        headless.write_blend(synthetic_take(n=5), "/proc/x.blend", models_dir=synthetic_models)


def test_writing_over_an_existing_file_leaves_no_backup(tmp_path, synthetic_models):
    for n in (5, 7):
        headless.write_blend(synthetic_take(n=n), tmp_path / "x.blend", models_dir=synthetic_models)
    assert sorted(os.listdir(tmp_path)) == ["models", "x.blend"]
    scene = open_blend(tmp_path / "x.blend")
    assert scene.frame_end == 7


def test_missing_models_name_the_fix(tmp_path):
    with pytest.raises(CaptureError, match="fetch_models"):
        headless.write_blend(synthetic_take(n=5), tmp_path / "x.blend", models_dir=tmp_path)
    assert not (tmp_path / "x.blend").exists()


def test_lean_keys_stay_within_tolerance_at_every_frame(tmp_path, synthetic_models):
    """Reduced Bezier keys, evaluated by Blender itself, follow the per-frame bake."""
    take = synthetic_take(n=120, fps=30.0)
    summary = headless.write_blend(take, tmp_path / "full.blend", models_dir=synthetic_models)
    assert summary[0][1] == summary[0][2]  # without lean keys: a key per sample
    full = {}
    open_blend(tmp_path / "full.blend")
    face = bpy.data.objects[summary[0][0]]
    for owner in (face, face.data.shape_keys):
        for fcurve in animation.animation_channels(owner).fcurves:
            full[(owner.name, fcurve.data_path, fcurve.array_index)] = animation.fcurve_values(fcurve)

    lean = headless.write_blend(take, tmp_path / "lean.blend", models_dir=synthetic_models, lean_keys=True)
    name, samples, kept = lean[0]
    assert samples == summary[0][1] and kept < samples / 2
    open_blend(tmp_path / "lean.blend")
    face = bpy.data.objects[name]
    assert list(face[bake.KEY_COUNTS_PROPERTY]) == [samples, kept]
    tolerance = {"rotation_quaternion": bake.KEY_TOLERANCES["rotation_quaternion"],
                 "location": bake.KEY_TOLERANCES["location"], "scale": bake.KEY_TOLERANCES["scale"]}
    checked = 0
    for owner in (face, face.data.shape_keys):
        for fcurve in animation.animation_channels(owner).fcurves:
            frames, values = full[(owner.name, fcurve.data_path, fcurve.array_index)]
            limit = tolerance.get(fcurve.data_path, bake.KEY_TOLERANCES["shape_key"])
            evaluated = np.array([fcurve.evaluate(f) for f in frames])
            assert np.abs(evaluated - values).max() <= limit * 1.01 + 1e-6, fcurve.data_path
            checked += 1
    assert checked == 20  # 4 rotation + 3 location + 3 scale + 10 expression


def late_entry_take(n=40, enters=10, leaves=30):
    """Two tracks; track 1 has a face only on frames [enters, leaves)."""
    take = synthetic_take(n=n, fps=30.0, tracks=2)
    absent = (take.track == 1) & ((take.frame < enters) | (take.frame >= leaves))
    take.valid[absent] = False
    for name in ("param", "roi", "lmk68"):
        getattr(take, name)[absent] = np.nan
    return take


def test_a_face_is_hidden_outside_its_own_frame_range(tmp_path, synthetic_models):
    take = late_entry_take()
    write(take, tmp_path, synthetic_models, take_path=str(tmp_path / "duo.npz"))
    first, second = bpy.data.objects["duo.face0"], bpy.data.objects["duo.face1"]
    channels = animation.animation_channels(first)
    assert channels.fcurves.find("hide_render") is None  # present on every frame: no keys
    for path in ("hide_viewport", "hide_render"):
        fcurve = animation.animation_channels(second).fcurves.find(path)
        shown = [fcurve.evaluate(frame) < 0.5 for frame in range(1, 41)]
        # scene frame = 1 + source frame; the face is there on source frames 10..29
        assert shown == [False] * 10 + [True] * 20 + [False] * 10, path


def test_only_the_chosen_tracks_are_baked(tmp_path, synthetic_models):
    take = late_entry_take()
    summary = headless.write_blend(take, tmp_path / "one.blend", models_dir=synthetic_models, tracks=[1])
    assert [name for name, _, _ in summary] == ["take.face1"]  # named after the take (no take file here)
    assert parse_tracks(" 2, 0 ") == [0, 2] and parse_tracks("") is None
    with pytest.raises(CaptureError, match="Track.*3.*not in the take"):
        headless.write_blend(take, tmp_path / "bad.blend", models_dir=synthetic_models, tracks=[3])
    with pytest.raises(CaptureError, match="track numbers"):
        parse_tracks("first")
    assert not (tmp_path / "bad.blend").exists()


def test_a_failed_multi_face_bake_leaves_no_markers_behind(synthetic_models, monkeypatch):
    """The first face's flagged-frame markers go with it when the second face fails."""
    scene = bpy.context.scene
    scene.timeline_markers.new("user marker", frame=3)
    take = synthetic_take(n=20, tracks=2, source="/x/two.mp4")
    take.confidence[(take.track == 0) & (take.frame >= 5) & (take.frame < 8)] = 0.05  # flagged on face 0
    real_bake = bake.bake_take
    marked = []

    def second_fails(scene, take, **options):
        if options["track"] == 1:
            marked.extend(m.name for m in scene.timeline_markers)
            raise CaptureError("Track 1 cannot be baked.")
        return real_bake(scene, take, **options)

    monkeypatch.setattr(bake, "bake_take", second_fails)
    with pytest.raises(CaptureError):
        bake.bake_tracks(scene, take, face_model=synthetic_face_model())
    assert any("flagged" in name for name in marked)  # face 0 had marked its flagged frames
    assert [(m.name, m.frame) for m in scene.timeline_markers] == [("user marker", 3)]

"""The take file: layout, round trip, version checks, and the dense builder."""

import os
import types

import numpy as np
import pytest

from ddfa_blender.core.errors import CaptureError
from ddfa_blender.core.take import TAKE_VERSION, Take, TakeBuilder, empty_rows


def observation(track_id, value):
    return types.SimpleNamespace(
        track_id=track_id, param=np.full(62, value), roi=np.array([0, 0, 10, 10]) + value,
        lmk68=np.full((68, 3), value), quality=0.5, detected=value == 0,
    )


def two_track_take():
    builder = TakeBuilder()
    builder.add(10, 0.0, [observation(0, 0.0)])
    builder.add(11, 0.04, [observation(0, 1.0), observation(3, 5.0)],
                channels={"extra": {0: [1.0, 2.0], 3: [3.0, 4.0]}})
    builder.add(12, 0.08, [])
    return builder.build(fps=25.0, image_size=(64, 48), model="mb05_120x120", source="clip.mp4",
                         meta={"channels": {"extra": ["a", "b"]}})


def test_builder_lays_out_one_row_per_track_and_frame():
    take = two_track_take()
    assert take.track_ids() == [0, 3]
    assert len(take) == 6
    np.testing.assert_array_equal(take.frame, [10, 11, 12, 10, 11, 12])
    np.testing.assert_array_equal(take.valid, [True, True, False, False, True, False])
    np.testing.assert_array_equal(take.detected, [True, False, False, False, False, False])
    assert np.isnan(take.param[2]).all() and np.isnan(take.lmk68[3]).all()
    second = take.for_track(3)
    np.testing.assert_array_equal(second.frame, [10, 11, 12])
    np.testing.assert_allclose(second.param[1], 5.0)
    np.testing.assert_allclose(take.channels["extra"][4], [3.0, 4.0])
    assert np.isnan(take.channels["extra"][0]).all()


def test_builder_without_faces_still_covers_every_frame():
    builder = TakeBuilder()
    for n in range(4):
        builder.add(n, n / 24, [])
    take = builder.build(fps=24, image_size=(8, 8))
    assert take.track_ids() == [0] and len(take) == 4 and not take.valid.any()


def test_save_load_round_trip(tmp_path):
    take = two_track_take()
    path = tmp_path / "take.npz"
    take.save(str(path))
    back = Take.load(str(path))
    for name in ("frame", "time", "track", "valid", "detected", "param", "roi", "lmk68", "quality"):
        np.testing.assert_array_equal(getattr(back, name), getattr(take, name))
    assert back.fps == 25.0 and back.image_size == (64, 48)
    assert back.model == "mb05_120x120" and back.source == "clip.mp4" and back.version
    assert back.meta == {"channels": {"extra": ["a", "b"]}}
    np.testing.assert_array_equal(back.channels["extra"], take.channels["extra"])
    with np.load(str(path), allow_pickle=False) as data:  # documented keys, no pickles
        assert {"param", "roi", "lmk68", "valid", "fps", "image_size", "frame", "model", "version"} <= set(data.files)


def test_save_into_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(CaptureError, match="does not exist"):
        two_track_take().save(str(tmp_path / "nope" / "take.npz"))


def test_failed_save_leaves_nothing_behind(tmp_path, monkeypatch):
    import errno

    from ddfa_blender.core import take as take_module

    def broken(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(take_module, "write_npz", broken)
    (tmp_path / "take.npz").write_bytes(b"previous")
    with pytest.raises(CaptureError, match="disk is full"):
        two_track_take().save(str(tmp_path / "take.npz"))
    assert os.listdir(tmp_path) == ["take.npz"]
    assert (tmp_path / "take.npz").read_bytes() == b"previous"


def test_streamed_write_equals_built_take(tmp_path):
    """The builder's streamed file holds exactly the take it builds in memory, across blocks."""
    from ddfa_blender.core import take as take_module

    builder = TakeBuilder()
    rng = np.random.default_rng(0)
    n = take_module._FRAMES_PER_BLOCK + 700  # more than one block of frames per track
    for i in range(n):
        seen = [observation(0, float(i))] if i % 7 else []
        if 300 < i < 5000:
            seen.append(observation(2, float(rng.normal())))
        builder.add(i, i / 30.0, seen, channels={"extra": {o.track_id: [i, o.track_id] for o in seen}})
    meta = dict(fps=30.0, image_size=(64, 48), model="m", source="s.mp4")
    built = builder.build(**meta)
    builder.write(str(tmp_path / "t.npz"), **meta)
    builder.close()
    back = Take.load(str(tmp_path / "t.npz"))
    assert len(built) == 2 * n and built.track_ids() == [0, 2]
    for name in ("frame", "time", "track", "valid", "detected", "param", "roi", "lmk68", "quality"):
        np.testing.assert_array_equal(getattr(back, name), getattr(built, name))
    np.testing.assert_array_equal(back.channels["extra"], built.channels["extra"])
    assert built.valid[:n].sum() == n - len(range(0, n, 7))
    np.testing.assert_allclose(built.param[n + 301 : n + 5000], built.param[n + 301 : n + 5000, :1] * np.ones(62))
    np.testing.assert_allclose(built.channels["extra"][n + 301], [301, 2])


def test_load_errors_name_the_problem(tmp_path):
    with pytest.raises(CaptureError, match="not found"):
        Take.load(str(tmp_path / "missing.npz"))
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(CaptureError, match="not a readable"):
        Take.load(str(junk))
    other = tmp_path / "other.npz"
    np.savez(other, something=np.zeros(3))
    with pytest.raises(CaptureError, match="not a ddfa-blender take"):
        Take.load(str(other))
    newer = tmp_path / "newer.npz"
    take = two_track_take()
    take.save(str(newer))
    data = dict(np.load(str(newer)))
    data["take_version"] = np.int32(TAKE_VERSION + 1)
    np.savez(newer, **data)
    with pytest.raises(CaptureError, match="newer ddfa-blender"):
        Take.load(str(newer))
    del data["lmk68"]
    data["take_version"] = np.int32(TAKE_VERSION)
    np.savez(newer, **data)
    with pytest.raises(CaptureError, match="missing lmk68"):
        Take.load(str(newer))


def test_shapes_are_checked():
    rows = empty_rows(3)
    rows["param"] = np.zeros((3, 61))
    with pytest.raises(CaptureError, match="param"):
        Take(fps=24, image_size=(4, 4), **rows)

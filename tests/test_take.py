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
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError):
        two_track_take().save(str(tmp_path / "take.npz"))
    assert os.listdir(tmp_path) == []


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

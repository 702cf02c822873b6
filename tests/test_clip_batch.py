"""A batch of clips: listing and order, output names, records and "complete and up to date"."""

import json
import os
import subprocess
import sys
import time

import pytest

from ddfa_blender.core.atomic_file import remove_stale_temporaries
from ddfa_blender.core.clip_batch import check_output_folder, clip_label, clip_outputs, clip_stem, list_clips
from ddfa_blender.core.clip_record import clip_fingerprint, read_record, redo_reason, write_record
from ddfa_blender.core.clip_result import STATUS_DONE, STATUS_FAILED, ClipResult
from ddfa_blender.core.errors import CaptureError

from conftest import ROOT


def touch(path, content=b"x"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(content)
    return str(path)


def test_folder_lists_videos_in_name_order_and_nothing_else(tmp_path):
    for name in ("b.mov", "a.mp4", "C.MKV", "notes.txt", "still.png"):
        touch(tmp_path / name)
    (tmp_path / "sub.mp4").mkdir()  # a folder named like a video is not a clip
    assert [os.path.basename(c) for c in list_clips(str(tmp_path))] == ["C.MKV", "a.mp4", "b.mov"]


def test_list_file_keeps_its_order_resolves_relative_names_and_maps_absolute_ones(tmp_path):
    folder = tmp_path / "clips"
    touch(folder / "z.mp4")
    touch(folder / "shots" / "a.mov")
    touch(tmp_path / "elsewhere" / "far.mp4")
    (folder / "seq").mkdir()
    touch(folder / "seq" / "0001.png")
    (folder / "list.txt").write_text(
        "# dialogue lines\nz.mp4\n\n  shots/a.mov  \n/studio/far.mp4\nseq\n", encoding="utf-8")
    mapped = lambda path: path.replace("/studio", str(tmp_path / "elsewhere"))  # noqa: E731
    clips = list_clips(str(folder), "list.txt", mapped)
    assert clips == [str(folder / "z.mp4"), str(folder / "shots" / "a.mov"),
                     str(tmp_path / "elsewhere" / "far.mp4"), str(folder / "seq")]
    assert [clip_label(c, str(folder)) for c in clips] == ["z.mp4", "shots/a.mov", clips[2], "seq"]


@pytest.mark.parametrize("lines, problem", [
    ("missing.mp4\n", "line 1: .*missing.mp4 does not exist"),
    ("a.mp4\na.mp4\n", "listed twice"),
    ("a.mp4\nA.mov\n", "would both write A.*: rename one"),
    ("# nothing\n\n", "names no clips"),
])
def test_bad_lists_are_refused_with_the_fix(tmp_path, lines, problem):
    touch(tmp_path / "a.mp4")
    touch(tmp_path / "A.mov")
    (tmp_path / "list.txt").write_text(lines, encoding="utf-8")
    with pytest.raises(CaptureError, match=problem):
        list_clips(str(tmp_path), "list.txt")


def test_missing_folder_list_or_videos_are_refused(tmp_path):
    with pytest.raises(CaptureError, match="does not exist"):
        list_clips(str(tmp_path / "nope"))
    with pytest.raises(CaptureError, match="No video files"):
        list_clips(str(tmp_path))
    with pytest.raises(CaptureError, match="Clip list .* does not exist"):
        list_clips(str(tmp_path), "list.txt")


def test_output_names_and_folders_that_would_clobber_inputs(tmp_path):
    assert clip_stem("/a/take_03.mov") == "take_03"
    assert clip_stem("/a/shot_%04d.png") == "shot"
    (tmp_path / "seq").mkdir()
    assert clip_stem(str(tmp_path / "seq")) == "seq"
    outputs = clip_outputs("/in/line.mp4", "/out")
    assert outputs.files() == ("/out/line.npz", "/out/line.blend", "/out/line_preview.mp4")
    assert outputs.record == "/out/line.capture.json"
    clips = [touch(tmp_path / "in" / "a.mp4"), touch(tmp_path / "in" / "b_preview.mp4")]
    with pytest.raises(CaptureError, match="is the clips folder"):
        check_output_folder(str(tmp_path / "in"), str(tmp_path / "in"), clips)
    listed = [touch(tmp_path / "out" / "b_preview.mp4"), touch(tmp_path / "in" / "b.mp4")]
    with pytest.raises(CaptureError, match="would overwrite a clip"):
        check_output_folder(str(tmp_path / "out"), str(tmp_path / "in"), listed)


def record_done(tmp_path, clip, settings):
    outputs = clip_outputs(clip, str(tmp_path / "out"))
    for path in outputs.files():
        touch(path)
    write_record(outputs.record, ClipResult(clip, STATUS_DONE, frames=10, frames_with_face=9, tracks=1, seconds=1.5,
                                            outputs=list(outputs.files())), clip_fingerprint(clip), settings)
    return outputs


def test_redo_reasons_in_order(tmp_path):
    clip = touch(tmp_path / "in" / "a.mp4", b"footage")
    settings = {"model": "mb05", "smoothing": "default"}
    outputs = clip_outputs(clip, str(tmp_path / "out"))
    assert redo_reason(outputs.record, clip, settings) == "not captured yet"
    record_done(tmp_path, clip, settings)
    assert redo_reason(outputs.record, clip, settings) is None
    record = read_record(outputs.record)
    assert (record["input"], record["frames_with_face"], record["outputs"]) == (
        clip, 9, ["a.npz", "a.blend", "a_preview.mp4"])
    assert redo_reason(outputs.record, clip, {**settings, "smoothing": "heavy"}) == (
        "settings changed (smoothing: 'default' -> 'heavy')")
    os.unlink(outputs.blend)
    assert redo_reason(outputs.record, clip, settings) == "output a.blend is missing"
    record_done(tmp_path, clip, settings)
    touch(clip, b"other footage")
    assert redo_reason(outputs.record, clip, settings) == "the clip changed"
    write_record(outputs.record, ClipResult(clip, STATUS_FAILED, frames=95, error="No face found"),
                 clip_fingerprint(clip), settings)
    assert redo_reason(outputs.record, clip, settings) == "the last attempt failed"


def test_a_touched_or_copied_clip_with_the_same_content_is_not_redone(tmp_path):
    clip = touch(tmp_path / "in" / "a.mp4", b"footage")
    outputs = record_done(tmp_path, clip, {})
    later = time.time() + 100
    os.utime(clip, (later, later))
    assert redo_reason(outputs.record, clip, {}) is None
    touch(clip, b"FOOTAGE")  # same size, new content
    assert redo_reason(outputs.record, clip, {}) == "the clip changed"


def test_an_edited_blend_is_not_redone_and_a_newer_record_layout_is_redone(tmp_path):
    clip = touch(tmp_path / "in" / "a.mp4")
    outputs = record_done(tmp_path, clip, {})
    touch(outputs.blend, b"an animator's edit")
    assert redo_reason(outputs.record, clip, {}) is None
    record = json.loads(open(outputs.record).read())
    record["record_version"] = 99
    open(outputs.record, "w").write(json.dumps(record))
    assert redo_reason(outputs.record, clip, {}) == "not captured yet"


def test_stale_temporaries_of_a_killed_writer_are_removed(tmp_path):
    target = tmp_path / "a.npz"
    # A process killed inside atomic_write (os._exit skips every cleanup, like SIGKILL).
    code = ("import os, sys; sys.path.insert(0, sys.argv[2]);"
            "from ddfa_blender.core.atomic_file import atomic_write\n"
            "with atomic_write(sys.argv[1], binary=True) as f:\n f.write(b'half'); f.flush(); os._exit(9)")
    subprocess.run([sys.executable, "-c", code, str(target), str(ROOT)], check=False)
    leftovers = [n for n in os.listdir(tmp_path) if n.startswith(".a.npz.")]
    assert len(leftovers) == 1  # the killed writer's temporary file
    touch(tmp_path / "a.blend@")
    touch(tmp_path / ".a.blend.89abcdef.partial.blend@")  # a Blender save of a temporary .blend, killed
    keep = [touch(tmp_path / ".b.npz.0123abcd.part"), touch(tmp_path / ".a.npz.notours.part"),
            touch(tmp_path / ".a.npz.0123abcd.partial.mp4")]
    removed = remove_stale_temporaries(str(target)) + remove_stale_temporaries(str(tmp_path / "a.blend"))
    assert len(removed) == 3 and not target.exists()
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(k) for k in keep)

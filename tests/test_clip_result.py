"""One clip's result, as scripts/capture.py's run_clip returns it to the folder batch and the farm."""

from ddfa_blender.core.clip_result import STATUS_DONE, STATUS_FAILED, ClipResult


def test_lines_for_the_user():
    done = ClipResult("a.mp4", STATUS_DONE, frames=72, frames_with_face=70, tracks=1, seconds=4.25)
    assert done.done and done.line() == "done   a.mp4: 72 frames, 70 with a face, 1 track, 4.2 s"
    failed = ClipResult("b.mp4", STATUS_FAILED, frames=95, error="No face found in b.mp4 (95 frames): ...")
    assert not failed.done and failed.line() == "failed b.mp4: No face found in b.mp4 (95 frames): ..."
    assert failed.to_dict()["frames"] == 95

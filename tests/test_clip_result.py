"""One clip's result, as scripts/capture.py's run_clip returns it to the folder batch and the farm."""

from ddfa_blender.core.clip_result import STATUS_DONE, STATUS_FAILED, ClipResult
from farm.capture_chunk import capture_script
from test_blender_synthetic import synthetic_take


def test_a_clip_that_fails_after_reading_its_frames_keeps_the_counts(tmp_path):
    """The take is read (48 frames, 2 faces, 2 frames without one), then the preview fails."""
    take_path, preview = str(tmp_path / "t.npz"), str(tmp_path / "t_preview.mp4")
    synthetic_take(n=48, tracks=2, invalid=(3, 4), source=str(tmp_path / "moved_away.mp4")).save(take_path)
    script = capture_script()
    settings = script.check_options(script.parse_args(["--take", take_path, "--preview", preview, "--quiet"]))
    result = script.run_clip(script.ClipJob(None, take_path, preview, None), settings)
    assert (result.input, result.status, result.frames, result.frames_with_face, result.tracks) == (
        take_path, STATUS_FAILED, 48, 46, 2)
    assert result.error.startswith("Cannot draw a preview: the take's footage ") and result.outputs == []
    assert result.seconds > 0 and not (tmp_path / "t_preview.mp4").exists()


def test_lines_for_the_user():
    done = ClipResult("a.mp4", STATUS_DONE, frames=72, frames_with_face=70, tracks=1, seconds=4.25)
    assert done.done and done.line() == "done   a.mp4: 72 frames, 70 with a face, 1 track, 4.2 s"
    failed = ClipResult("b.mp4", STATUS_FAILED, frames=95, error="No face found in b.mp4 (95 frames): ...")
    assert not failed.done and failed.line() == "failed b.mp4: No face found in b.mp4 (95 frames): ..."
    assert failed.to_dict()["frames"] == 95

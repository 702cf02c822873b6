"""The OpenJD job run by the reference runner (`openjd check`, `openjd run`) on clips of ../shared.

Each `openjd run` is one session, like one farm worker's: a farm runs the
tasks of a job in many sessions and keeps going when one task fails, while
one session stops at its first failed task. Failure isolation is therefore
tested the farm's way, one session per task.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from conftest import ROOT

TEMPLATE = ROOT / "farm" / "capture_job" / "template.yaml"
OPENJD = os.path.join(os.path.dirname(sys.executable), "openjd")


def openjd(*arguments, timeout=300):
    done = subprocess.run([OPENJD, *map(str, arguments)], capture_output=True, text=True, timeout=timeout)
    return done.returncode, log_lines(done.stdout + done.stderr)


def log_lines(text):
    """The log without OpenJD's timestamps."""
    return [line.split("\t", 1)[-1] for line in text.splitlines()]


def action_outputs(log):
    """What each action of the session printed, in order (the job environment's check first)."""
    blocks, current = [], None
    for line in log:
        if line == "Output:":
            current = []
        elif current is not None and line.startswith("Process pid"):
            blocks.append([text for text in current if text.strip()])
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def output_lines(log):
    """Everything the job's own commands printed."""
    return [line for block in action_outputs(log) for line in block]


def parameters_file(tmp_path, clips, output, models_dir, **more):
    values = {"Clips": str(clips), "OutputDir": str(output), "ProjectDir": str(ROOT),
              "Python": sys.executable, "ModelsDir": str(models_dir), **more}
    path = tmp_path / f"params_{len(list(tmp_path.glob('params_*')))}.json"
    path.write_text(json.dumps(values))
    return f"file://{path}"


def linked_clips(folder, shared_dir, names):
    """A clips folder of links to ../shared videos: ``{link name: shared video}``."""
    folder.mkdir()
    for link, video in names.items():
        os.symlink(shared_dir / "data" / "video" / video, folder / link)
    return folder


def without_chunking(tmp_path):
    """The template as a scheduler without the TASK_CHUNKING extension runs it: one INT task per clip."""
    template = yaml.safe_load(TEMPLATE.read_text())
    del template["extensions"]
    clip = template["steps"][0]["parameterSpace"]["taskParameterDefinitions"][0]
    clip["type"] = "INT"
    del clip["chunks"]
    template["parameterDefinitions"] = [p for p in template["parameterDefinitions"] if p["name"] != "ClipsPerTask"]
    path = tmp_path / "template_without_chunking.yaml"
    path.write_text(yaml.safe_dump(template, sort_keys=False))
    return path


def test_template_validates_and_needs_only_task_chunking(tmp_path):
    code, log = openjd("check", TEMPLATE, "--extensions", "TASK_CHUNKING")
    assert code == 0, log
    code, log = openjd("check", TEMPLATE, "--extensions", "")
    assert code != 0 and any("requires the TASK_CHUNKING extension" in line for line in log)
    code, log = openjd("check", without_chunking(tmp_path), "--extensions", "")
    assert code == 0, log


def test_bad_clip_fails_its_own_task_and_the_summary_reports_every_clip(tmp_path, shared_dir, models_dir):
    clips = linked_clips(tmp_path / "clips", shared_dir,
                         {"no_face.mp4": "no_face.mp4", "obama.mp4": "obama.mp4", "single_face.mp4": "single_face.mp4"})
    out = tmp_path / "out"
    template = without_chunking(tmp_path)  # one INT task per clip, as any OpenJD scheduler runs it
    parameters = parameters_file(tmp_path, clips, out, models_dir, ClipCount=3)

    results = {}
    for task in (1, 2, 3):  # three farm workers, one task each
        results[task] = openjd("run", template, "-p", parameters, "--step", "Capture", "--task-param", f"Clip={task}")
    code, log = results[1]
    assert code != 0
    printed = action_outputs(log)[-1]  # the Capture task's own output
    assert printed[-1].startswith("error: no_face.mp4: No face found in ") and "face must be visible" in printed[-1]
    assert not any("Traceback" in line for line in log)
    for task in (2, 3):
        assert results[task][0] == 0, results[task][1]

    assert sorted(os.listdir(out)) == sorted([
        "no_face.capture.json", "obama.blend", "obama.capture.json", "obama.npz", "obama_preview.mp4",
        "single_face.blend", "single_face.capture.json", "single_face.npz", "single_face_preview.mp4"])
    for stem, frames in (("obama", 55), ("single_face", 72)):
        with np.load(out / f"{stem}.npz") as take:
            assert len(np.unique(take["frame"])) == frames
        assert blend_header(out / f"{stem}.blend") == b"BLENDER"
        assert decoded_frames(out / f"{stem}_preview.mp4") == frames

    code, log = openjd("run", template, "-p", parameters, "--step", "Summary", "--no-run-dependencies")
    assert code == 0, log
    assert "summary: 3 clips: 2 done, 1 failed, 0 missing" in " ".join(output_lines(log))
    summary = json.loads((out / "summary.json").read_text())
    rows = {row["clip"]: row for row in summary["rows"]}
    assert [row["clip"] for row in summary["rows"]] == ["no_face.mp4", "obama.mp4", "single_face.mp4"]
    assert (rows["obama.mp4"]["status"], rows["obama.mp4"]["frames"], rows["obama.mp4"]["tracks"]) == ("done", 55, 1)
    assert rows["single_face.mp4"]["frames"] == 72 and rows["single_face.mp4"]["frames_with_face"] == 72
    assert rows["no_face.mp4"]["status"] == "failed" and rows["no_face.mp4"]["frames_with_face"] == 0
    assert rows["no_face.mp4"]["frames"] == decoded_frames(clips / "no_face.mp4")  # every frame was read
    assert rows["no_face.mp4"]["error"] == printed[-1].removeprefix("error: no_face.mp4: ")
    assert all(row["seconds"] > 0 for row in summary["rows"])
    csv_lines = (out / "summary.csv").read_text().splitlines()
    assert csv_lines[0] == "clip,frames,frames_with_face,tracks,seconds,status,error" and len(csv_lines) == 4

    # A retry: the good clip is left as it is, the failed one is tried again.
    before = {name: (out / name).stat().st_mtime_ns for name in os.listdir(out)}
    code, log = openjd("run", template, "-p", parameters, "--step", "Capture", "--task-param", "Clip=2")
    assert code == 0 and "clip 2/3 obama.mp4: complete and up to date, skipped" in output_lines(log)
    code, log = openjd("run", template, "-p", parameters, "--step", "Capture", "--task-param", "Clip=1")
    assert code != 0 and "clip 1/3 no_face.mp4: capturing (the last attempt failed)" in output_lines(log)
    after = {name: (out / name).stat().st_mtime_ns for name in os.listdir(out)}
    assert {name for name in after if after[name] != before.get(name)} == {"no_face.capture.json"}


def blend_header(path):
    """The first bytes of a .blend file (Blender 5 saves them zstd-compressed)."""
    import zstandard

    data = path.read_bytes()
    if data[:4] == b"\x28\xb5\x2f\xfd":
        data = zstandard.ZstdDecompressor().stream_reader(data).read(7)
    return data[:7]


def decoded_frames(path):
    import cv2

    video = cv2.VideoCapture(str(path))
    count = 0
    while video.read()[0]:
        count += 1
    return count


def descendants(pid):
    """Every process below ``pid``."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def test_killed_job_run_again_finishes_only_the_missing_clips(tmp_path, shared_dir, models_dir):
    clips = tmp_path / "clips"
    clips.mkdir()
    video = shared_dir / "data" / "video"
    (clips / "lines.txt").write_text(
        f"# three dialogue lines\n{video / 'single_face.mp4'}\n{video / 'obama.mp4'}\n{video / 'face_noface.mov'}\n")
    out = tmp_path / "out"
    parameters = parameters_file(tmp_path, clips, out, models_dir, ClipList=str(clips / "lines.txt"),
                                 ClipCount=3, ClipsPerTask=2)

    job = subprocess.Popen([OPENJD, "run", str(TEMPLATE), "-p", parameters], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, start_new_session=True)
    first = out / "single_face.capture.json"
    deadline = time.monotonic() + 240
    while not first.exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first.exists(), "the first clip was never finished"
    time.sleep(1.0)  # into the second clip of the same task
    for pid in [job.pid, *descendants(job.pid)]:  # the whole job at once, as a power cut would
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    job.wait()
    assert not (out / "obama.capture.json").exists() and not (out / "summary.csv").exists()
    kept = {name: (out / name).stat().st_mtime_ns for name in os.listdir(out) if name.startswith("single_face")}

    code, log = openjd("run", TEMPLATE, "-p", parameters)
    assert code == 0, log
    printed = output_lines(log)
    assert f"clip 1/3 {video / 'single_face.mp4'}: complete and up to date, skipped" in printed
    assert f"clip 2/3 {video / 'obama.mp4'}: capturing (not captured yet)" in printed
    assert f"clip 3/3 {video / 'face_noface.mov'}: capturing (not captured yet)" in printed
    assert {name: (out / name).stat().st_mtime_ns for name in kept} == kept
    rows = json.loads((out / "summary.json").read_text())["rows"]
    assert [(r["clip"], r["status"]) for r in rows] == [
        (str(video / name), "done") for name in ("single_face.mp4", "obama.mp4", "face_noface.mov")]
    assert 0 < rows[2]["frames_with_face"] < rows[2]["frames"] == 169
    assert not [name for name in os.listdir(out) if name.endswith((".part", "@")) or ".partial" in name]


def test_a_chunk_goes_on_past_its_bad_clip_and_ends_with_the_error(tmp_path, shared_dir, models_dir):
    clips = linked_clips(tmp_path / "clips", shared_dir, {"b_good.mp4": "single_face.mp4"})
    (clips / "a_broken.mp4").write_bytes(b"not a video at all" * 100)
    out = tmp_path / "out"
    parameters = parameters_file(tmp_path, clips, out, models_dir, ClipCount=2, ClipsPerTask=2)
    code, log = openjd("run", TEMPLATE, "-p", parameters, "--step", "Capture")
    printed = action_outputs(log)[-1]
    assert code != 0
    assert any(line.startswith("error: a_broken.mp4: Cannot open video ") for line in printed)
    assert "clip 2/2 b_good.mp4: capturing (not captured yet)" in printed
    assert printed[-1].startswith("error: 1 of 2 clips failed: a_broken.mp4: ")
    assert (out / "b_good.blend").is_file() and json.loads((out / "b_good.capture.json").read_text())["status"] == "done"
    assert json.loads((out / "a_broken.capture.json").read_text())["status"] == "failed"


def test_canceled_task_stops_on_sigterm_and_leaves_its_clip_to_the_next_run(tmp_path, shared_dir, models_dir):
    clips = linked_clips(tmp_path / "clips", shared_dir, {"talking.mp4": "talking_head_640x360.mp4"})
    out = tmp_path / "out"
    parameters = parameters_file(tmp_path, clips, out, models_dir, ClipCount=1)
    job = subprocess.Popen([OPENJD, "run", str(TEMPLATE), "-p", parameters, "--step", "Capture"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, sent = [], False
    for line in job.stdout:  # Ctrl-C once frames are being captured: OpenJD cancels the running task
        lines.append(line)
        if "capture talking.mp4 [" in line and not sent:
            job.send_signal(signal.SIGINT)
            sent = True
    job.wait(timeout=120)
    log = log_lines("".join(lines))
    assert any("Sending signal \"term\"" in line for line in log)  # NOTIFY_THEN_TERMINATE: SIGTERM first
    assert "terminated: clips not finished are captured again by the next run" in output_lines(log)
    assert any(line.startswith("Process pid") and "exited with code: 143" in line for line in log)
    assert not (out / "talking.capture.json").exists()
    assert not [name for name in os.listdir(out) if name.endswith((".part", "@")) or ".partial" in name]


@pytest.mark.parametrize("change, problem", [
    ({"ClipCount": 4}, "clips.txt now holds 3 clips but the job was made for 4"),
    ({"ClipCount": 3, "ModelsDir": "/nonexistent/models"}, "models missing/corrupt in /nonexistent/models"),
    ({"ClipCount": 3, "Retarget": "AVATAR:ICT_Hed"}, "No object 'ICT_Hed' in "),  # capture.py's own check
])
def test_worker_check_fails_the_session_before_any_task(tmp_path, shared_dir, models_dir, change, problem):
    clips = linked_clips(tmp_path / "clips", shared_dir, {"a.mp4": "single_face.mp4", "b.mp4": "obama.mp4",
                                                          "c.mp4": "no_face.mp4"})
    (clips / "clips.txt").write_text("a.mp4\nb.mp4\nc.mp4\n")
    out = tmp_path / "out"
    avatar = str(shared_dir / "data" / "avatars" / "ict_facekit_arkit.blend")
    values = {"ClipList": str(clips / "clips.txt"), **{k: v.replace("AVATAR", avatar) if isinstance(v, str) else v
                                                       for k, v in change.items()}}
    values.setdefault("ModelsDir", str(models_dir))
    code, log = openjd("run", TEMPLATE, "-p", parameters_file(tmp_path, clips, out, values.pop("ModelsDir"), **values))
    assert code != 0
    errors = [line for line in output_lines(log) if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: worker check failed on ") and problem in errors[0]
    assert not out.exists() or not any(name.endswith(".capture.json") for name in os.listdir(out))


def test_blender_runner_runs_every_step_inside_blender(tmp_path, shared_dir, models_dir):
    """Runner blender: job_step.py starts Blender with the job and works inside it.

    The Blender executable is stood in for by a script that logs its command
    line, runs the script Blender was given (-P) with this environment's
    Python and its real bpy module, then prints a version line as Blender
    does after everything else; the real Blender binary is not on this
    machine's path (a real Blender 4.3.2 run of the worker check is in the
    farm report).
    """
    clips = linked_clips(tmp_path / "clips", shared_dir, {"single_face.mp4": "single_face.mp4"})
    calls = tmp_path / "blender_calls.txt"
    blender = tmp_path / "blender_cli_stand_in.sh"
    blender.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nshift 5\n{sys.executable} "$@"\ncode=$?\n'
                       'echo "Blender 5.0.1"\nexit $code\n')
    blender.chmod(0o755)
    out = tmp_path / "out"
    parameters = parameters_file(tmp_path, clips, out, models_dir, ClipCount=1, Runner="blender", Blender=str(blender))
    code, log = openjd("run", TEMPLATE, "-p", parameters)
    assert code == 0, log
    lines = calls.read_text().splitlines()
    step = ROOT / "farm" / "job_step.py"
    assert [line.split(" --path-mapping")[0] for line in lines] == [
        f"-b -q --python-exit-code 1 -P {step} -- {command}" for command in ("check", "capture 1-1", "summary")]
    printed = output_lines(log)
    assert any(line.startswith("worker check: ddfa-blender") and ", Blender " in line for line in printed)
    assert json.loads((out / "summary.json").read_text())["done"] == 1

    wrong_count = parameters_file(tmp_path, clips, out, models_dir, ClipCount=2, Runner="blender",
                                  Blender=str(blender))
    code, log = openjd("run", TEMPLATE, "-p", wrong_count)
    printed = action_outputs(log)[0]
    assert code != 0 and printed[-1].startswith("error: worker check failed on ") and "made for 2" in printed[-1]

    missing = parameters_file(tmp_path, clips, out, models_dir, ClipCount=1, Runner="blender",
                              Blender=str(tmp_path / "no-blender"))
    code, log = openjd("run", TEMPLATE, "-p", missing)
    errors = [line for line in output_lines(log) if line.startswith("error:")]
    assert code != 0 and len(errors) == 1 and "cannot start Blender" in errors[0]

"""The farm job's plumbing without running a job: ranges, path mapping, settings, parameters, summary."""

import json
import subprocess
import sys

import pytest
from openjd.sessions import PathMappingRule

from conftest import ROOT
from ddfa_blender.core.clip_record import write_record
from ddfa_blender.core.clip_result import STATUS_DONE, STATUS_FAILED, ClipResult
from ddfa_blender.core.clip_batch import clip_outputs
from farm.job_settings import JobSettings, JobSettingsError, split_avatar
from farm.openjd_values import load_path_mapping, parse_range
from farm.summary import summary_rows, totals_line, write_summary

ENVIRONMENT = {
    "DDFA_JOB_CLIPS": "/clips", "DDFA_JOB_CLIP_LIST": "", "DDFA_JOB_CLIP_COUNT": "3",
    "DDFA_JOB_OUTPUT": "/out", "DDFA_JOB_MODEL": "mb05", "DDFA_JOB_SMOOTHING": "heavy",
    "DDFA_JOB_EYES": "false", "DDFA_JOB_RETARGET": "", "DDFA_JOB_RUNNER": "python",
    "DDFA_JOB_BLENDER": "blender", "DDFA_MODELS": "",
}


@pytest.mark.parametrize("expression, values", [
    ("3", [3]), ("1-1", [1]), ("4-6", [4, 5, 6]), ("1-9:4", [1, 5, 9]), (" 7 , 1-2 ", [1, 2, 7]),
])
def test_chunks_as_openjd_writes_them(expression, values):
    assert parse_range(expression) == values


@pytest.mark.parametrize("expression", ["", "a", "1-", "3-1", "1-5:0", "1;2"])
def test_bad_ranges_are_refused(expression):
    with pytest.raises(ValueError):
        parse_range(expression)


RULES = [
    ("POSIX", "/studio", "/mnt/studio"),
    ("POSIX", "/studio/shows/a", "/fast/a"),
    ("WINDOWS", "S:\\Projects", "/mnt/projects"),
    ("WINDOWS", "\\\\nas\\share", "/mnt/nas"),
]


@pytest.mark.parametrize("path", [
    "/studio/clips/x.mp4", "/studio/shows/a/b.mov", "/studio", "/studiox/y.mp4", "/other/z.mp4",
    "S:\\Projects\\show\\c.mp4", "s:/projects/show/c.mp4", "\\\\nas\\share\\d.mp4", "\\\\NAS\\Share\\e\\f.mp4",
])
def test_path_mapping_agrees_with_openjd_sessions(tmp_path, path):
    rules_file = tmp_path / "rules.json"
    rules_file.write_text(json.dumps({"version": "pathmapping-1.0", "path_mapping_rules": [
        {"source_path_format": f, "source_path": s, "destination_path": d} for f, s, d in RULES]}))
    reference = sorted((PathMappingRule.from_dict({"source_path_format": f, "source_path": s,
                                                   "destination_path": d}) for f, s, d in RULES),
                       key=lambda rule: -len(rule.source_path.parts))
    expected = next((mapped for matched, mapped in (r.apply(path=path) for r in reference) if matched), path)
    assert load_path_mapping(str(rules_file))(path) == expected


def test_no_rules_file_maps_nothing():
    assert load_path_mapping("")("/studio/x.mp4") == "/studio/x.mp4"


def test_settings_from_the_job_environment(tmp_path):
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"version": "pathmapping-1.0", "path_mapping_rules": [
        {"source_path_format": "WINDOWS", "source_path": "S:\\", "destination_path": "/mnt/s"}]}))
    settings = JobSettings.from_environment(
        {**ENVIRONMENT, "DDFA_JOB_RETARGET": "S:\\avatars\\ict.blend:ICT_Head", "DDFA_JOB_CLIP_LIST": "l.txt",
         "DDFA_JOB_EYES": "False", "DDFA_MODELS": "/models"}, str(rules))
    assert settings.retarget == "/mnt/s/avatars/ict.blend:ICT_Head"
    assert settings.clip_list == "/clips/l.txt"
    assert settings.capture_arguments() == ["--model", "mb05", "--smooth", "heavy", "--retarget",
                                            "/mnt/s/avatars/ict.blend:ICT_Head", "--models", "/models"]
    recorded = settings.record_settings(lambda path: {"path": path})
    assert recorded["eyes"] is True and recorded["retarget_object"] == "ICT_Head"
    assert recorded["avatar"] == {"path": "/mnt/s/avatars/ict.blend"}
    assert split_avatar("C:\\a\\ict.blend") == ("C:\\a\\ict.blend", "")
    assert split_avatar("rel/ict.blend:Head") == ("rel/ict.blend", "Head")


@pytest.mark.parametrize("change, problem", [
    ({"DDFA_JOB_CLIPS": ""}, "DDFA_JOB_CLIPS is not set"),
    ({"DDFA_JOB_CLIP_COUNT": "0"}, "positive whole number"),
    ({"DDFA_JOB_RUNNER": "maya"}, "python or blender"),
    ({"DDFA_JOB_EYES": "maybe"}, "true or false"),
    ({"DDFA_JOB_RUNNER": "blender", "DDFA_JOB_BLENDER": ""}, "DDFA_JOB_BLENDER is not set"),
])
def test_bad_settings_name_the_variable(change, problem):
    with pytest.raises(JobSettingsError, match=problem):
        JobSettings.from_environment({**ENVIRONMENT, **change})


def test_summary_rows_statuses_and_files(tmp_path):
    clips = [str(tmp_path / "in" / name) for name in ("a.mp4", "b.mp4", "c.mp4")]
    out = tmp_path / "out"
    out.mkdir()
    write_record(clip_outputs(clips[0], str(out)).record,
                 ClipResult(clips[0], STATUS_DONE, frames=72, frames_with_face=70, tracks=1, seconds=4.25), {}, {})
    write_record(clip_outputs(clips[1], str(out)).record,
                 ClipResult(clips[1], STATUS_FAILED, frames=95, seconds=3.0, error="No face found in b.mp4: fix"), {}, {})
    rows = summary_rows(clips, str(tmp_path / "in"), str(out))
    assert [(r["clip"], r["status"], r["frames"], r["error"]) for r in rows] == [
        ("a.mp4", "done", 72, ""), ("b.mp4", "failed", 95, "No face found in b.mp4: fix"), ("c.mp4", "missing", "", "")]
    assert totals_line(rows) == "3 clips: 1 done, 1 failed, 1 missing"
    csv_path, json_path = write_summary(rows, str(out))
    assert open(csv_path).read().splitlines() == [
        "clip,frames,frames_with_face,tracks,seconds,status,error",
        "a.mp4,72,70,1,4.25,done,", "b.mp4,95,0,0,3.0,failed,No face found in b.mp4: fix", "c.mp4,,,,,missing,"]
    summary = json.loads(open(json_path).read())
    assert (summary["clips"], summary["done"], summary["failed"], summary["missing"]) == (3, 1, 1, 1)
    assert summary["rows"] == json.loads(json.dumps(rows))


def job_params(*arguments):
    return subprocess.run([sys.executable, str(ROOT / "farm" / "job_params.py"), *arguments],
                          capture_output=True, text=True)


def test_job_params_counts_clips_and_checks_options_before_submission(tmp_path):
    for name in ("b.mp4", "a.mov"):
        (tmp_path / name).write_bytes(b"x")
    done = job_params("--clips", str(tmp_path), "--output", str(tmp_path / "out"), "--smooth", "light",
                      "--clips-per-task", "2")
    assert done.returncode == 0, done.stderr
    parameters = json.loads(done.stdout)
    assert parameters["ClipCount"] == 2 and parameters["ClipsPerTask"] == 2
    assert parameters["Clips"] == str(tmp_path) and parameters["Smoothing"] == "light"
    assert parameters["ProjectDir"] == str(ROOT) and parameters["Python"] == str(ROOT / ".venv" / "bin" / "python")
    assert "2 clips; the job has 1 Capture task(s)" in done.stderr
    for bad, problem in ((["--smooth", "silky"], "Unknown smoothing preset 'silky'"),
                         (["--retarget", "/no/avatar.blend:Head"], "avatar /no/avatar.blend does not exist"),
                         (["--output", str(tmp_path)], "is the clips folder")):
        arguments = ["--clips", str(tmp_path), "--output", str(tmp_path / "out"), *bad]
        failed = job_params(*arguments)
        assert failed.returncode == 1 and failed.stdout == ""
        assert failed.stderr.strip().splitlines() == [failed.stderr.strip()] and problem in failed.stderr


def test_worker_check_warns_about_packages_that_differ_from_the_lock(tmp_path, monkeypatch):
    import numpy
    import onnxruntime

    from farm import worker_check

    (tmp_path / "requirements.lock").write_text(
        f"# pins\nnumpy=={numpy.__version__}\nonnxruntime==0.0.1  # old\nno-such-package==1.0\n"
        'numpy==0.1 ; python_version < "3.0"\n')
    monkeypatch.setattr(worker_check, "PROJECT_ROOT", str(tmp_path))
    assert worker_check._unpinned_packages() == [
        f"onnxruntime {onnxruntime.__version__} here, requirements.lock pins ==0.0.1: rebuild this environment",
        "no-such-package is not installed here, requirements.lock pins ==1.0: rebuild this environment"]

"""What the job template's actions run on a worker.

    python farm/job_step.py check   [--path-mapping RULES.json]   (job environment, on enter)
    python farm/job_step.py capture CHUNK [--path-mapping RULES.json]   (a Capture task)
    python farm/job_step.py summary [--path-mapping RULES.json]   (the Summary step)

The job's settings come from the ``DDFA_JOB_*`` variables its environment
sets (see ``farm/job_settings.py``). With ``DDFA_JOB_RUNNER=blender`` this
script starts Blender (``blender -b -q --python-exit-code 1 -P farm/job_step.py
-- ...``) and does the work inside it, with the packages of the installed
extension; otherwise it works in this interpreter. Exit codes: 0 done, 1 a
problem (one line on stderr naming it and the fix), 130 interrupted (SIGINT),
143 terminated (SIGTERM: a task canceled on the farm).
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if PROJECT_ROOT not in sys.path:
    sys.path.insert(0, PROJECT_ROOT)

from farm.job_settings import JobSettings, JobSettingsError  # noqa: E402

IN_BLENDER = "DDFA_JOB_IN_BLENDER"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="job_step.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["check", "capture", "summary"])
    parser.add_argument("chunk", nargs="?", help="capture: the clip numbers, e.g. 3 or 1-5")
    parser.add_argument("--path-mapping", default="", metavar="RULES.json",
                        help="the session's path mapping rules ({{Session.PathMappingRulesFile}})")
    args = parser.parse_args(argv)
    if (args.command == "capture") != (args.chunk is not None):
        parser.error("capture takes the clip numbers (e.g. capture 3-5); check and summary take none")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        settings = JobSettings.from_environment(os.environ, args.path_mapping)
    except JobSettingsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if settings.runner == "blender" and os.environ.get(IN_BLENDER) != "1":
        return run_in_blender(settings.blender, argv)
    signal.signal(signal.SIGTERM, _terminate)
    from ddfa_blender.core.errors import CaptureError

    try:
        return run(args, settings)
    except CaptureError as err:
        what = "worker check failed on " + platform.node() + ": " if args.command == "check" else ""
        print(f"error: {what}{err}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Terminated) as stop:
        kind = "terminated" if isinstance(stop, Terminated) else "interrupted"
        print(f"{kind}: clips not finished are captured again by the next run", file=sys.stderr)
        return 143 if isinstance(stop, Terminated) else 130


def run(args: argparse.Namespace, settings: JobSettings) -> int:
    if args.command == "check":
        from farm.worker_check import check_worker

        for line in check_worker(settings, inside_blender=os.environ.get(IN_BLENDER) == "1"):
            print(f"worker check: {line}")
        print(f"worker ready: {platform.node()}")
        return 0
    if args.command == "capture":
        from farm.capture_chunk import run_chunk

        return run_chunk(settings, args.chunk)
    from farm.capture_chunk import job_clips
    from farm.summary import summary_rows, totals_line, write_summary

    rows = summary_rows(job_clips(settings), settings.clips, settings.output)
    paths = write_summary(rows, settings.output)
    print(f"summary: {totals_line(rows)} -> {paths[0]}, {paths[1]}")
    return 0


def run_in_blender(blender: str, argv: list[str]) -> int:
    """Run this script with ``argv`` inside Blender in the background; Blender's exit code.

    Not ``--factory-startup``: the ddfa-blender extension must load from the
    user's preferences for its packages to be importable. Blender's output is
    passed through line by line; when it fails, its last ``error:`` line is
    repeated at the end, because Blender prints its version line (buffered C
    output) after everything the script wrote. SIGTERM and SIGINT are passed
    on to Blender, so a canceled task stops it cleanly.
    """
    command = [blender, "-b", "-q", "--python-exit-code", "1", "-P", os.path.abspath(__file__), "--", *argv]
    try:
        child = subprocess.Popen(command, env={**os.environ, IN_BLENDER: "1"}, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, errors="replace")
    except OSError as err:
        print(f"error: cannot start Blender ({blender}: {err.strerror}) on {platform.node()}: "
              "set the job's Blender parameter to the Blender executable on the workers.", file=sys.stderr)
        return 1
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda signum, frame: child.send_signal(signum))
    error, last = "", ""
    for line in child.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        last = line.rstrip("\n")
        error = last if last.startswith("error: ") else error
    code = child.wait()
    if code != 0 and error and last != error:
        print(error, file=sys.stderr)
    return code


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every cleanup on the way out runs."""


def _terminate(signum, frame):
    raise Terminated


def script_arguments() -> list[str]:
    """This script's arguments: those after ``--`` when Blender runs it, else all."""
    if "--" in sys.argv:
        return sys.argv[sys.argv.index("--") + 1 :]
    return sys.argv[1:]


if __name__ == "__main__":
    sys.exit(main(script_arguments()))

"""Peak memory of a capture against its length: a long take must cost no more than a short one.

Builds a short and a long clip by looping the shared 640x360 talking head with ffmpeg
(stream copy, cached under the temp folder), captures each with
``scripts/capture.py --input CLIP --take TAKE`` in its own process, and reads that
process's peak resident set size (``ru_maxrss`` from ``wait4``). Last line:

    peak_rss_ratio_long_vs_short=<f> peak_rss_mib=<f>

(``peak_rss_mib``: the long capture's peak). Target: ratio <= 1.10 for 30 minutes
against 5.
"""

from __future__ import annotations

import argparse
import math
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("DDFA_SHARED", ROOT.parent / "shared"))
SOURCE = SHARED / "data/video/talking_head_640x360.mp4"
SOURCE_SECONDS = 19.7


def looped_clip(minutes: float, folder: pathlib.Path) -> pathlib.Path:
    """The talking head looped to ``minutes`` (made once, then reused)."""
    path = folder / f"talking_head_{minutes:g}min.mp4"
    if not path.exists():
        loops = math.ceil(minutes * 60 / SOURCE_SECONDS)
        partial = folder / f".{path.name}.partial.mp4"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", str(loops), "-i", str(SOURCE),
                        "-t", str(minutes * 60), "-an", "-c:v", "copy", str(partial)], check=True)
        partial.replace(path)
    return path


def peak_rss_mib(clip: pathlib.Path, take: pathlib.Path, threads: int) -> tuple[float, float]:
    """(peak RSS in MiB, seconds) of one capture process."""
    command = [sys.executable, str(ROOT / "scripts/capture.py"), "--input", str(clip), "--take", str(take),
               "--quiet", "--threads", str(threads)]
    started = time.perf_counter()
    process = subprocess.Popen(command, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    error = process.stderr.read().decode(errors="replace")
    if process.returncode != 0:
        raise SystemExit(f"capture of {clip.name} failed ({process.returncode}): {error.strip()}")
    return usage.ru_maxrss / 1024.0, seconds  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short-minutes", type=float, default=5.0)
    parser.add_argument("--long-minutes", type=float, default=30.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "ddfa-bench-memory"),
                        help="folder for the looped clips (kept between runs)")
    args = parser.parse_args()
    if not SOURCE.is_file():
        raise SystemExit(f"test media not found at {SOURCE}")
    if shutil.which("ffmpeg") is None:
        raise SystemExit("ffmpeg is needed to build the long clip: apt-get install ffmpeg (make bench does)")
    cache = pathlib.Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    figures = {}
    with tempfile.TemporaryDirectory(prefix="ddfa-bench-memory-") as scratch:
        for label, minutes in (("short", args.short_minutes), ("long", args.long_minutes)):
            clip = looped_clip(minutes, cache)
            take = pathlib.Path(scratch) / f"{label}.npz"
            peak, seconds = peak_rss_mib(clip, take, args.threads)
            size = take.stat().st_size / 2**20
            figures[label] = peak
            print(f"{label}: {minutes:g} min clip, peak RSS {peak:.1f} MiB, {seconds:.1f} s, take {size:.1f} MiB",
                  flush=True)
    ratio = figures["long"] / figures["short"]
    print(f"peak_rss_ratio_long_vs_short={ratio:.3f} peak_rss_mib={figures['long']:.1f}")


if __name__ == "__main__":
    main()

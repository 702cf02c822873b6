"""How often the panel updates while a capture runs, in a real Blender window.

The Capture operator's timer asks Blender to redraw the panel ten times a
second. It used to tag the whole 3D view area, which redraws the viewport too
(costly with software OpenGL); it now tags only the sidebar region. This
benchmark runs the GUI scenario's capture of ``obama.mp4`` (55 frames) in
Debian's Blender 4.3.2 twice, once each way (``REAL_BLENDER_GUI_REDRAW=area``
puts the old behaviour back inside that Blender), and prints for each: the
sidebar's and the viewport's redraws per second during the capture, counted
by draw handlers, and the capture's wall time. Last line: the ratios
(sidebar-only / whole-area).

Needs what ``make test-gui`` needs (root, ``../shared``, the trixie chroot and
the py313 linux zip in ``build/gui/zips``: run ``make test-gui
GUI_BLENDERS=4.3`` first). Usage: ``.venv/bin/python benchmarks/bench_gui_redraw.py``.
Timings depend on the machine's load: compare the two lines of one run.
"""

import os
import pathlib
import shutil
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "gui")]

import test_real_blender as gui  # noqa: E402

PARTS = "startup prepare_local capture"


def run(mode: str, zip_path, wheels) -> dict:
    blender = gui.BLENDERS["4.3"]
    run_dir = gui.RUNS / f"bench-{mode}"
    shutil.rmtree(run_dir, ignore_errors=True)
    (run_dir / "shots").mkdir(parents=True)
    command = [str(gui.TOOLS / "run.sh"), "--timeout", "600", str(ROOT / "tests" / "gui" / "scenario.py"), "--",
               "--run-dir", str(run_dir), "--shared", str(gui.SHARED),
               "--bfm-wheel", str(wheels[0]), "--landmarker-wheel", str(wheels[1]), "--live-clip", "unused",
               "--rotated", "unused"]
    env = gui.chroot_env(blender, REAL_BLENDER_SHOTS=run_dir / "shots", REAL_BLENDER_GUI_PARTS=PARTS,
                         REAL_BLENDER_GUI_REDRAW=mode)
    result = gui.run_real_blender(command, env, timeout=900)
    outcome = gui.Outcome.read(blender, "", result.returncode, result.stdout + result.stderr, run_dir)
    failed = [m for step in outcome.steps.values() for ok, m in step.checks if not ok]
    if failed or "capture_s" not in outcome.figures:
        sys.exit(f"the {mode} run failed: {failed or 'no figures'} (output in {run_dir})")
    return {k: float(v) for k, v in outcome.figures.items()}


def main() -> None:
    os.chdir(ROOT)
    gui.BUILD.mkdir(parents=True, exist_ok=True)
    zip_path = gui.built_zip(gui.BLENDERS["4.3"])
    gui.run([str(gui.TOOLS / "setup.sh"), "--extension", str(zip_path)], env=gui.chroot_env(gui.BLENDERS["4.3"]))
    wheels = gui.prepare_wheels()
    figures = {mode: run(mode, zip_path, wheels) for mode in ("sidebar", "area")}
    for mode, values in figures.items():
        print(f"{mode:8s} sidebar {values['sidebar_redraws_per_s']:5.1f}/s  viewport "
              f"{values['viewport_redraws_per_s']:5.1f}/s  capture {values['capture_s']:5.1f} s")
    new, old = figures["sidebar"], figures["area"]
    print(f"sidebar_updates_ratio={new['sidebar_redraws_per_s'] / max(old['sidebar_redraws_per_s'], 1e-9):.2f} "
          f"capture_time_ratio={new['capture_s'] / old['capture_s']:.2f}")


if __name__ == "__main__":
    main()

"""Run the Blender-layer tests under every supported Blender: the bpy module of each, in its own venv.

Usage: python scripts/test_matrix.py [--bpy 4.2.23 --bpy 5.3.0 ...] [-- PYTEST_ARGS]

For each bpy version of :data:`MATRIX` (or those named with ``--bpy``) this
makes its venv with scripts/make_venv.py (Python 3.11 up to Blender 5.0, 3.13
from 5.1; wheels from the shared cache) and runs :data:`BLENDER_TESTS`: every
``tests/test_blender_*.py`` (the end-to-end capture -> bake -> retarget ->
.blend run among them) and the tests elsewhere that need bpy. A version whose
bpy is the dev lock's pin for its Python reuses ``make test``'s venv (.venv,
.venv-3.13); the others live in ``.matrix/bpy-VERSION``. pytest runs in a
fresh process per version, so a crash or hang at exit shows as that version's
exit status. Prints one line per version (passed / failed / errors / skipped,
expected failures, exit status, seconds) and a summary table; exits 1 if any version failed.
"""

import argparse
import operator
import pathlib
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import make_venv  # noqa: E402

# (bpy version, the Python its wheels are built for): 4.2 LTS, 4.5 LTS, 5.0, 5.2 LTS, 5.3.
MATRIX = (("4.2.23", "3.11"), ("4.5.15", "3.11"), ("5.0.1", "3.11"), ("5.2.3", "3.13"), ("5.3.0", "3.13"))
# make test's venvs, by Python (Makefile: VENV, VENV313).
TEST_VENVS = {"3.11": ROOT / ".venv", "3.13": ROOT / ".venv-3.13"}
MATRIX_DIR = ROOT / ".matrix"
# Tests that need bpy outside tests/test_blender_*.py (by node id: their files mostly test core/).
OTHER_BLENDER_TESTS = (
    "tests/test_bad_inputs_blender.py",
    "tests/test_multiface.py::test_every_face_in_an_image_gets_its_own_mesh",
    "tests/test_synthetic_heads.py::test_render_writes_video_and_truth_and_caches",
    "tests/test_synthetic_heads.py::test_landmarks_land_on_the_rendered_face",
)
TIMEOUT = 45 * 60  # seconds per version: a hang at exit shows as a failure, not a stuck CI
_COMPARE = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq}


def blender_tests() -> list[str]:
    """The Blender-layer tests: every tests/test_blender_*.py, then :data:`OTHER_BLENDER_TESTS`."""
    files = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "tests").glob("test_blender_*.py"))
    return files + list(OTHER_BLENDER_TESTS)


def lock_bpy(python: str) -> str | None:
    """The dev lock's bpy pin for ``python`` (``3.11``), reading its ``python_version`` markers."""
    version = tuple(int(p) for p in python.split("."))
    for line in make_venv.LOCKS[1].read_text().splitlines():
        match = re.fullmatch(r'\s*bpy==(\S+)\s*(?:;\s*python_version\s*(\S+)\s*"([\d.]+)")?\s*', line)
        if match:
            pin, op, bound = match.groups()
            if op is None or _COMPARE[op](version, tuple(int(p) for p in bound.split("."))):
                return pin
    return None


def venv_for(bpy: str, python: str) -> pathlib.Path:
    """Create or refresh the venv for ``bpy`` and return it (make test's own when it pins ``bpy``)."""
    if lock_bpy(python) == bpy:
        venv = TEST_VENVS[python]
        make_venv.make_venv(venv, python)
    else:
        venv = MATRIX_DIR / f"bpy-{bpy}"
        make_venv.make_venv(venv, python, bpy)
    return venv


def counts(junit: pathlib.Path) -> dict:
    """passed / failed / errors / skipped / xfailed from a pytest JUnit XML report (empty if missing).

    JUnit has no expected failures: pytest reports them as skipped with type ``pytest.xfail``.
    """
    if not junit.is_file():
        return {}
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    total, failed, errors, skipped = (int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
    xfailed = sum(1 for s in suite.iter("skipped") if s.get("type") == "pytest.xfail")
    return {"passed": total - failed - errors - skipped, "failed": failed, "errors": errors,
            "skipped": skipped - xfailed, "xfailed": xfailed}


def run_version(bpy: str, python: str, pytest_args: list[str]) -> dict:
    """Make the venv, run the Blender-layer tests in it; the row of the summary table."""
    row = {"bpy": bpy, "python": python}
    start = time.monotonic()
    try:
        venv = venv_for(bpy, python)
    except make_venv.SetupError as err:
        return {**row, "status": f"venv: {err}", "seconds": time.monotonic() - start}
    row["venv_seconds"] = time.monotonic() - start
    with tempfile.TemporaryDirectory(prefix="ddfa-matrix-") as folder:
        junit = pathlib.Path(folder) / "junit.xml"
        argv = [str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                f"--junitxml={junit}", *pytest_args, *blender_tests()]
        print(f"== bpy {bpy} (Python {python}): {venv.relative_to(ROOT)}", flush=True)
        try:
            status = subprocess.run(argv, cwd=ROOT, timeout=TIMEOUT).returncode
        except subprocess.TimeoutExpired:
            status = f"timeout after {TIMEOUT} s"
        row.update(counts(junit))
    row["status"] = status
    row["seconds"] = time.monotonic() - start
    return row


def ok(row: dict) -> bool:
    return row["status"] == 0 and row.get("failed", 1) == 0 and row.get("errors", 1) == 0


def table(rows: list[dict]) -> str:
    """The summary: one line per version."""
    lines = ["bpy      Python  passed  failed  errors  skipped  xfailed  exit  venv s  total s"]
    for r in rows:
        lines.append(f"{r['bpy']:<8} {r['python']:<7} {r.get('passed', '-'):>6}  {r.get('failed', '-'):>6}  "
                     f"{r.get('errors', '-'):>6}  {r.get('skipped', '-'):>7}  {r.get('xfailed', '-'):>7}  "
                     f"{str(r['status']):>4}  {r.get('venv_seconds', 0):>6.0f}  {r['seconds']:>7.0f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    pytest_args = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    known = [v for v, _ in MATRIX]
    parser.add_argument("--bpy", action="append", choices=known, help="only this bpy version (repeatable)")
    args = parser.parse_args(argv)
    start = time.monotonic()
    rows = [run_version(bpy, python, pytest_args) for bpy, python in MATRIX if not args.bpy or bpy in args.bpy]
    print("\nBlender matrix (Blender-layer tests per bpy version)\n" + table(rows))
    print(f"wall time {time.monotonic() - start:.0f} s")
    failed = [r["bpy"] for r in rows if not ok(r)]
    if failed:
        print(f"error: the Blender-layer tests failed under bpy {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

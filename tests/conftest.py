"""Fixtures shared by the tests: the ../shared media and the prepared models folder."""

import os
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED = pathlib.Path(os.environ.get("DDFA_SHARED", ROOT.parent / "shared"))
MODELS = pathlib.Path(os.environ.get("DDFA_MODELS", ROOT / "models"))


@pytest.fixture(scope="session")
def shared_dir() -> pathlib.Path:
    """The ../shared folder of test media and model assets; skips when absent."""
    if not (SHARED / "data").is_dir():
        pytest.skip(f"test media not found at {SHARED} (a user's machine has no ../shared)")
    return SHARED


@pytest.fixture(scope="session")
def models_dir(shared_dir) -> pathlib.Path:
    """The prepared models folder (``make test`` prepares it before running)."""
    if not (MODELS / "bfm_face.npz").is_file():
        pytest.fail(f"models not prepared in {MODELS}: run `make models` first")
    return MODELS


def take_action_names(*takes: str) -> list[str]:
    """The sorted action names that bakes of ``takes`` (each baking a face with shape keys) leave.

    One action per take with layered actions (Blender 4.4 and later); before
    that one per animated data-block: ``t1`` (the object) and ``t1.key`` (its
    shape keys). Needs bpy (imported here so this module imports without it).
    """
    import bpy

    layered = "slots" in bpy.types.Action.bl_rna.properties
    return sorted(name for take in takes for name in ((take,) if layered else (take, f"{take}.key")))

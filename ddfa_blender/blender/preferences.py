"""Add-on preferences: the models folder, inference threads, and Prepare Models.

Installed as an extension, the models live by default in the extension's
user folder (``bpy.utils.extension_path_user(<package>, path="models")``),
which survives upgrades; loaded any other way (the command line, tests) the
default is :func:`..core.model_setup.default_models_dir`. No
``from __future__ import annotations`` here: Blender reads the property
annotations as objects.
"""

import os

import bpy
from bpy.props import IntProperty, StringProperty

# The add-on's package: ``bl_ext.<repository>.ddfa_blender`` as an extension.
ADDON_PACKAGE = __package__.rpartition(".")[0]
MODELS_SUBFOLDER = "models"
REQUIRED_MODEL_FILES = ("bfm_face.npz", "mb05_120x120.onnx")


def is_extension() -> bool:
    """True when the add-on runs as an installed extension."""
    return ADDON_PACKAGE.startswith("bl_ext.")


def default_models_dir() -> str:
    """The models folder used when the preference is empty."""
    if is_extension():
        return bpy.utils.extension_path_user(ADDON_PACKAGE, path=MODELS_SUBFOLDER, create=True)
    from ..core.model_setup import default_models_dir as core_default

    return str(core_default())


def addon_preferences(context):
    """This add-on's preferences, or None when it is not enabled as an add-on."""
    addon = context.preferences.addons.get(ADDON_PACKAGE)
    return addon.preferences if addon is not None else None


def models_dir(context) -> str:
    """The models folder to use: the preference if set, else the default."""
    prefs = addon_preferences(context)
    if prefs is not None and prefs.models_dir:
        return bpy.path.abspath(prefs.models_dir)
    return default_models_dir()


def threads(context) -> int | None:
    """Inference threads (None: onnxruntime's choice)."""
    prefs = addon_preferences(context)
    if prefs is None or prefs.threads == 0:
        return None
    return prefs.threads


def missing_models(folder: str) -> list[str]:
    """The required model files absent from ``folder``."""
    return [name for name in REQUIRED_MODEL_FILES if not os.path.isfile(os.path.join(folder, name))]


class DDFA_AddonPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_PACKAGE

    models_dir: StringProperty(
        name="Models Folder", subtype="DIR_PATH",
        description="Folder of the prepared models (empty: the add-on's own folder)",
    )
    threads: IntProperty(
        name="Threads", description="CPU threads for the network (0: automatic)",
        default=0, min=0, max=64,
    )

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "models_dir")
        folder = models_dir(context)
        missing = missing_models(folder)
        column = layout.column(align=True)
        if missing:
            column.label(text=f"Missing: {', '.join(missing)}", icon="ERROR")
        else:
            column.label(text="Models ready", icon="CHECKMARK")
        column.label(text=f"In {folder}", icon="BLANK1")
        layout.operator("ddfa.prepare_models", icon="IMPORT")
        job = getattr(context.window_manager, "ddfa_job", None)
        if job is not None and job.running:
            layout.label(text=job.label or job.title, icon="SORTTIME")
        layout.prop(self, "threads")


CLASSES = (DDFA_AddonPreferences,)

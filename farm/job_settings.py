"""The job's settings as the job environment hands them to every action.

The template's ``ddfa-blender worker`` environment sets ``DDFA_JOB_*``
variables from the job parameters (PATH parameters already path-mapped by
OpenJD); paths inside other values (a clip list's lines, a retarget avatar,
an ``.onnx`` model) are mapped here with the session's rules.

Pure standard library: the launcher that starts Blender reads it too.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Mapping

from .openjd_values import load_path_mapping

RUNNERS = ("python", "blender")


class JobSettingsError(Exception):
    """A job setting is missing or malformed; the message names it and the fix."""


@dataclasses.dataclass(frozen=True)
class JobSettings:
    """What to capture, where the outputs go, and with which options.

    ``clips``: the clips folder; ``clip_list``: an optional list file
    (relative to ``clips`` or absolute); ``clip_count``: clips the job was
    made for; ``output``: the output folder; ``model``, ``smoothing``,
    ``eyes``, ``retarget`` (``avatar.blend:Object`` or ""): capture options as
    ``scripts/capture.py`` takes them; ``models``: the prepared models folder
    ("" = default); ``runner``: ``python`` or ``blender``; ``blender``: the
    Blender executable.
    """

    clips: str
    clip_list: str
    clip_count: int
    output: str
    model: str
    smoothing: str
    eyes: bool
    retarget: str
    models: str
    runner: str
    blender: str
    map_path: Callable[[str], str] = dataclasses.field(default=lambda path: path, compare=False, repr=False)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str], path_mapping_file: str = "") -> "JobSettings":
        """Read the ``DDFA_JOB_*`` variables; raise :class:`JobSettingsError` naming a bad one."""

        def get(name: str, required: bool = True) -> str:
            value = environ.get(name, "")
            if required and not value:
                raise JobSettingsError(
                    f"{name} is not set: run this through farm/capture_job/template.yaml "
                    "(its job environment sets it from the job parameters)."
                )
            return value

        count = get("DDFA_JOB_CLIP_COUNT")
        if not count.isdigit() or int(count) < 1:
            raise JobSettingsError(f"DDFA_JOB_CLIP_COUNT must be a positive whole number, got {count!r}.")
        runner = get("DDFA_JOB_RUNNER")
        if runner not in RUNNERS:
            raise JobSettingsError(f"DDFA_JOB_RUNNER must be python or blender, got {runner!r}.")
        eyes = get("DDFA_JOB_EYES").lower()
        if eyes not in ("true", "false"):
            raise JobSettingsError(f"DDFA_JOB_EYES must be true or false, got {eyes!r}.")
        map_path = load_path_mapping(path_mapping_file)
        clips = get("DDFA_JOB_CLIPS")
        model = get("DDFA_JOB_MODEL")
        return cls(
            clips=clips,
            clip_list=_mapped(get("DDFA_JOB_CLIP_LIST", required=False), clips, map_path),
            clip_count=int(count),
            output=get("DDFA_JOB_OUTPUT"),
            model=_mapped(model, clips, map_path) if model.endswith(".onnx") else model,
            smoothing=get("DDFA_JOB_SMOOTHING"),
            eyes=eyes == "true",
            retarget=_mapped_avatar(get("DDFA_JOB_RETARGET", required=False), clips, map_path),
            models=get("DDFA_MODELS", required=False),
            runner=runner,
            blender=get("DDFA_JOB_BLENDER", required=runner == "blender"),
            map_path=map_path,
        )

    def capture_arguments(self) -> list[str]:
        """The ``scripts/capture.py`` options these settings stand for (no input or outputs)."""
        arguments = ["--model", self.model, "--smooth", self.smoothing]
        if self.eyes:
            arguments.append("--eyes")
        if self.retarget:
            arguments += ["--retarget", self.retarget]
        if self.models:
            arguments += ["--models", self.models]
        return arguments

    def record_settings(self, fingerprint: Callable[[str], dict]) -> dict:
        """The settings a clip's record keeps: a change to any of them redoes the clip.

        Files named by a setting (an ``.onnx`` model, the avatar) are compared
        by ``fingerprint(path)``, not by path, so moving the avatar is no
        change but editing it is.
        """
        avatar, avatar_object = split_avatar(self.retarget)
        settings = {"model": self.model, "smoothing": self.smoothing, "eyes": self.eyes or bool(avatar),
                    "retarget_object": avatar_object}
        if self.model.endswith(".onnx"):
            settings["model"] = {"onnx": fingerprint(self.model)}
        if avatar:
            settings["avatar"] = fingerprint(avatar)
        return settings


def split_avatar(value: str) -> tuple[str, str]:
    """``(file, object)`` of ``avatar.blend[:Object]`` ("" for what is absent);
    the colon of a Windows drive is not taken for the separator."""
    path, separator, name = value.rpartition(":")
    if separator and path.lower().endswith(".blend"):
        return path, name
    return value, ""


def _mapped(path: str, clips: str, map_path: Callable[[str], str]) -> str:
    """``path`` mapped for this worker when absolute, else resolved against the clips folder."""
    if not path:
        return ""
    return map_path(path) if os.path.isabs(path) or _is_windows_absolute(path) else os.path.join(clips, path)


def _mapped_avatar(value: str, clips: str, map_path: Callable[[str], str]) -> str:
    """``avatar.blend:Object`` with its file part mapped (a Windows drive's colon is not the separator)."""
    path, name = split_avatar(value)
    return _mapped(path, clips, map_path) + (":" + name if name else "")


def _is_windows_absolute(path: str) -> bool:
    return len(path) > 2 and path[1] == ":" and path[2] in "\\/" or path.startswith("\\\\")

"""Values Open Job Description hands to an action: task range expressions and path mapping rules.

Pure standard library: the launcher that starts Blender runs it too.
"""

from __future__ import annotations

import json
import ntpath
import os
import posixpath
import re
from typing import Callable

_RANGE_ELEMENT = re.compile(r"^\s*(-?\d+)\s*(?:-\s*(-?\d+)\s*(?::\s*(-?\d+)\s*)?)?$")


def parse_range(expression: str) -> list[int]:
    """The integers of an OpenJD range expression (``"3"``, ``"1-5"``, ``"1-9:2,12"``),
    sorted; a chunk of a ``CHUNK[INT]`` task parameter arrives in this form.

    Raises ValueError for anything else.
    """
    values: set[int] = set()
    for element in expression.split(","):
        match = _RANGE_ELEMENT.match(element)
        if not match:
            raise ValueError(f"not a range expression: {expression!r}")
        start, end, step = match.groups()
        start = int(start)
        end = int(end) if end is not None else start
        step = int(step) if step is not None else 1
        if step == 0 or (end - start) * step < 0:
            raise ValueError(f"not a range expression: {expression!r}")
        values.update(range(start, end + (1 if step > 0 else -1), step))
    return sorted(values)


def load_path_mapping(rules_file: str) -> Callable[[str], str]:
    """A function mapping a submitter's absolute path to this worker's, from the
    session's path mapping rules file (``{{Session.PathMappingRulesFile}}``,
    format ``pathmapping-1.0``). The most specific matching rule applies, as in
    OpenJD's own runtime; POSIX rules match case-sensitively, WINDOWS rules
    ignore ASCII case and accept either separator. No file, or no rules: the
    path unchanged.
    """
    rules = []
    if rules_file and os.path.isfile(rules_file):
        with open(rules_file, encoding="utf-8") as handle:
            document = json.load(handle)
        for rule in document.get("path_mapping_rules", []):
            source_format = rule.get("source_path_format")
            if source_format not in ("POSIX", "WINDOWS"):
                continue  # URI sources name object stores, never files a clip list holds
            flavour = posixpath if source_format == "POSIX" else ntpath
            parts = _split(flavour, rule["source_path"])
            rules.append((source_format, parts, rule["destination_path"]))
        rules.sort(key=lambda rule: -len(rule[1]))

    def map_path(path: str) -> str:
        for source_format, source_parts, destination in rules:
            flavour = posixpath if source_format == "POSIX" else ntpath
            parts = _split(flavour, path)
            head = parts[: len(source_parts)]
            if source_format == "WINDOWS":
                head, wanted = [p.lower() for p in head], [p.lower() for p in source_parts]
            else:
                wanted = source_parts
            if len(parts) >= len(source_parts) and head == wanted:
                return os.path.join(destination, *parts[len(source_parts):])
        return path

    return map_path


def _split(flavour, path: str) -> list[str]:
    """Path components, the root (``/``, ``C:\\``, ``\\\\server\\share\\``) first."""
    if flavour is ntpath:
        path = path.replace("/", "\\")
    drive, rest = flavour.splitdrive(path)
    unc = drive.startswith(flavour.sep * 2)  # \\server\share is a root whether or not a separator follows
    root = drive + (flavour.sep if rest.startswith(flavour.sep) or unc else "")
    return [root] + [part for part in rest.split(flavour.sep) if part and part != "."]

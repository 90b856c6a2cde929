"""Action names of the datasets, stored in every store as `/classes/name` (one per label).

NTU RGB+D 60 / 120: the official titles of actions A001-A120 (the first 60 are NTU60's);
PKU-MMD: the 51 actions of phase 1 in label order. Phase 2's 41 actions keep phase 1's ids (its
label files use the same 1..51 id space), so the same table names them by id; a store records
which ids occur, and reports show only those. `hiclr-prep pkummd --class-names FILE` gives other
names (line k for label k). Synthetic data writes its own
`class_names.txt` beside the files, and the preparers take names from there (or `--class-names`).
Where no names are known, classes are called `class 0`, `class 1`, ...
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from hiclr.common.errors import UserError

CLASS_NAMES_FILE = "class_names.txt"
_RESOURCES = {
    "ntu60": ("ntu120_class_names.txt", 60),
    "ntu120": ("ntu120_class_names.txt", 120),
    "pkummd1": ("pkummd1_class_names.txt", 51),
    "pkummd2": ("pkummd1_class_names.txt", 51),
}


def _bundled(filename: str) -> list[str]:
    text = resources.files("data_prep").joinpath("resources", filename).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def read_class_names(path: str | os.PathLike) -> list[str]:
    """One name per line (line k = label k); blank lines are not allowed in between."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise UserError(
            f"{path}: cannot be read ({err.strerror}); pass a text file with one class name per line"
        ) from None
    while lines and not lines[-1].strip():
        lines.pop()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise UserError(f"{path}, line {number}: empty class name; give one name per line, label 0 first")
    return [line.strip() for line in lines]


def class_names(dataset: str, num_classes: int, given: list[str] | None = None) -> list[str]:
    """`num_classes` names: `given` (e.g. synthetic data's own), else the dataset's official ones, else numbers."""
    if given is not None:
        names = list(given)
    elif dataset in _RESOURCES:
        filename, count = _RESOURCES[dataset]
        names = _bundled(filename)[:count]
    else:
        names = []
    names = names[:num_classes]
    return names + [f"class {k}" for k in range(len(names), num_classes)]


def short_name(name: str, width: int = 24) -> str:
    """A class name cut to `width` characters for tables and plot labels (`...` marks the cut)."""
    return name if len(name) <= width else name[: width - 3].rstrip() + "..."

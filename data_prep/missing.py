"""The official lists of NTU RGB+D samples with missing or incomplete skeletons (bundled data).

NTU60: 302 names; NTU120: 535 names (a superset). Such samples are skipped and counted by the prep.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from pathlib import Path

from hiclr.common.errors import UserError

LISTS = {
    "ntu60": "NTU_RGBD_samples_with_missing_skeletons.txt",
    "ntu120": "NTU_RGBD120_samples_with_missing_skeletons.txt",
}
_NAME = re.compile(r"^S\d{3}C\d{3}P\d{3}R\d{3}A\d{3}$")


def parse_missing_list(text: str) -> frozenset[str]:
    """Sample names in a missing-skeleton list; header lines and blank lines are ignored."""
    names = set()
    for line in text.splitlines():
        token = line.strip()
        if token.endswith(".skeleton"):
            token = token[: -len(".skeleton")]
        if _NAME.match(token):
            names.add(token)
    return frozenset(names)


@cache
def missing_samples(dataset: str) -> frozenset[str]:
    """The bundled official list for `dataset` ('ntu60' or 'ntu120')."""
    if dataset not in LISTS:
        raise ValueError(f"no missing-skeleton list for {dataset!r}; choose one of {', '.join(LISTS)}")
    text = resources.files("data_prep").joinpath("resources", LISTS[dataset]).read_text(encoding="utf-8")
    return parse_missing_list(text)


def load_missing_list(path: str | Path) -> frozenset[str]:
    """A user-supplied list (one sample name per line; other lines ignored)."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        raise UserError(
            f"{path}: the missing-skeleton list cannot be read ({err.strerror}); check the path given to --missing-list"
        ) from None
    names = parse_missing_list(text)
    if not names:
        raise UserError(
            f"{path}: the missing-skeleton list holds no sample names like "
            f"S001C002P005R002A008; give a list with one name per line"
        )
    return names

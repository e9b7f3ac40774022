"""Find a language-modelling corpus when none is named: the order every command (and the demo) follows.

1. ``--data DIR``; 2. ``$ISSCLI_DATA``; 3. ``../shared/data/ptb`` next to the project root
(the parent of the ``isscli`` package folder), or next to the working folder; 4. the
download cache (``~/.cache/isscli/ptb``); 5. a download into that cache; 6. where none of
those can be had (no network), the small public-domain corpus that ships with the package.
A folder that is named (1, 2) but missing is an error, never silently replaced.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from isscli.data.corpus import find_split_files
from isscli.data.download import PTB_URL, default_cache, download_ptb, has_ptb
from isscli.io.errors import IsscliError

ENVIRONMENT_VARIABLE = "ISSCLI_DATA"
FALLBACK = Path(__file__).with_name("fallback")
SHARED = Path("shared") / "data" / "ptb"


@dataclass
class DataSource:
    """Where the corpus was found, and a line for people when it is not the real PTB."""

    path: Path
    origin: str
    note: str | None = None


def project_root() -> Path:
    """The folder that holds the ``isscli`` package (the repository root in a checkout)."""
    return Path(__file__).resolve().parents[2]


def shared_candidates() -> list[Path]:
    return [project_root().parent / SHARED, Path.cwd().resolve().parent / SHARED]


def _named(path: Path, origin: str) -> DataSource:
    if not path.exists():
        raise IsscliError(f"data {path} ({origin}) not found",
                          "give a folder with train/valid/test text files, or one text file")
    return DataSource(path, origin)


def resolve_data(explicit: Path | None = None, download: bool = True, url: str = PTB_URL) -> DataSource:
    """The corpus folder to use; see the module docstring for the order."""
    if explicit is not None:
        return _named(Path(explicit), "--data")
    if os.environ.get(ENVIRONMENT_VARIABLE):
        return _named(Path(os.environ[ENVIRONMENT_VARIABLE]), f"${ENVIRONMENT_VARIABLE}")
    for candidate in shared_candidates():
        if candidate.is_dir() and _is_corpus(candidate):
            return DataSource(candidate, "shared")
    cache = default_cache()
    if has_ptb(cache):
        return DataSource(cache, "cache")
    reason = "downloads are off"
    if download:
        try:
            download_ptb(cache, url, overwrite=True)
            return DataSource(cache, "download", f"downloaded PTB into {cache}")
        except IsscliError as error:
            reason = error.message
    return DataSource(
        FALLBACK,
        "fallback",
        f"PTB not found ({reason}): using the small corpus shipped with isscli (Pride and Prejudice); "
        "its perplexities are not comparable to PTB's — pass --data DIR or run `isscli data ptb DIR`",
    )


def _is_corpus(folder: Path) -> bool:
    try:
        find_split_files(folder)
    except IsscliError:
        return False
    return True

"""``data_ptb``: Mikolov's Penn Treebank, downloaded and verified before anything is written (``isscli data ptb``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from isscli.api.common import PathLike
from isscli.api.validation import Checked, checked_arguments
from isscli.data.corpus import SPLITS
from isscli.data.download import PTB_SHA256, PTB_URL, download_ptb, ptb_file
from isscli.observer import Observer, SilentObserver


@dataclass(kw_only=True)
class DataPtbRequest(Checked):
    """Write ``ptb.{train,valid,test}.txt`` into the folder ``dest`` (created if needed) from ``url``."""

    dest: PathLike
    url: str | None = None  # where simple-examples.tgz is (http(s):// or file://); None: Mikolov's RNNLM page
    force: bool = False  # replace the files if they exist

    @property
    def files(self) -> tuple[str, ...]:
        """The files written into ``dest``."""
        return tuple(ptb_file(split) for split in SPLITS)


@dataclass
class CorpusFile:
    split: str
    path: Path
    size: int  # bytes
    sha256: str  # verified before it was written


@dataclass
class DataPtbResult:
    dest: Path
    url: str
    files: list[CorpusFile]


@checked_arguments
def data_ptb(request: DataPtbRequest, observer: Observer | None = None) -> DataPtbResult:
    """Download Mikolov's ``simple-examples.tgz``, check the three PTB files' sha256 sums, then write them (each
    atomically; a failed or tampered download writes nothing).

    Example (it downloads)::

        isscli.data_ptb(isscli.DataPtbRequest(dest="ptb/")).files[0].path  # ptb/ptb.train.txt
    """
    url = request.url or PTB_URL
    (observer or SilentObserver()).note(f"downloading {url} …")
    written = download_ptb(Path(request.dest), url, overwrite=request.force)
    files = [CorpusFile(split, path, path.stat().st_size, PTB_SHA256[split]) for split, path in written.items()]
    return DataPtbResult(Path(request.dest), url, files)

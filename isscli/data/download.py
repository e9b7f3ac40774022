"""Download Mikolov's PTB (``simple-examples.tgz``) and verify it before writing anything.

The three split files are read from the archive in memory and checked against known sha256
sums; only when all three match are they written (each atomically). A failed or tampered
download leaves no file behind.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from functools import partial
from pathlib import Path

from isscli.data.corpus import SPLITS
from isscli.io.atomic import atomic_write, check_output_path
from isscli.io.errors import IsscliError

PTB_URL = "http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz"
PTB_SHA256 = {
    "train": "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
    "valid": "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
    "test": "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
}
TIMEOUT_S = 30.0


def ptb_file(split: str) -> str:
    return f"ptb.{split}.txt"


def default_cache() -> Path:
    """``$XDG_CACHE_HOME/isscli/ptb``, else ``~/.cache/isscli/ptb``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "isscli" / "ptb"


def fetch(url: str, timeout: float = TIMEOUT_S) -> io.BufferedRandom:
    """The resource at ``url`` in an anonymous temp file; network failures are one-line errors."""
    spool = tempfile.TemporaryFile()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http(s) and file:// by design
            shutil.copyfileobj(response, spool)
    except (urllib.error.URLError, OSError, ValueError) as error:
        spool.close()
        reason = getattr(error, "reason", None) or error
        raise IsscliError(
            f"cannot download {url} ({reason})",
            "check the network, or fetch simple-examples.tgz elsewhere and pass --url file:///path/to/it",
        ) from None
    spool.seek(0)
    return spool


def extract_verified(archive: io.BufferedRandom, url: str, checksums: dict[str, str]) -> dict[str, bytes]:
    """The split files from the archive, each checked against its sha256."""
    try:
        with tarfile.open(fileobj=archive, mode="r:*") as tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
            contents = {}
            for split in SPLITS:
                member = members.get(ptb_file(split))
                handle = tar.extractfile(member) if member is not None else None
                if handle is None:
                    raise IsscliError(f"{url} has no {ptb_file(split)}", "give the URL of simple-examples.tgz")
                contents[split] = handle.read()
    except (tarfile.TarError, EOFError, OSError) as error:
        raise IsscliError(
            f"{url} is not a readable tar archive ({error})", "give the URL of simple-examples.tgz"
        ) from None
    for split, data in contents.items():
        digest = hashlib.sha256(data).hexdigest()
        if digest != checksums[split]:
            raise IsscliError(
                f"checksum mismatch for {ptb_file(split)} from {url} (sha256 {digest[:12]}…, expected "
                f"{checksums[split][:12]}…); nothing was written",
                "the download is corrupt or not the PTB archive: retry, or check --url",
            )
    return contents


def download_ptb(
    dest: Path | str,
    url: str = PTB_URL,
    checksums: dict[str, str] | None = None,
    overwrite: bool = False,
    timeout: float = TIMEOUT_S,
) -> dict[str, Path]:
    """Fetch, verify and write ``ptb.{train,valid,test}.txt`` into ``dest`` (created if needed)."""
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise IsscliError(f"{dest} is a file", "give a folder to download PTB into")
    checksums = checksums or PTB_SHA256
    targets = {split: dest / ptb_file(split) for split in SPLITS}
    if dest.is_dir():
        for path in targets.values():
            check_output_path(path, overwrite=overwrite)
    with fetch(url, timeout) as archive:
        contents = extract_verified(archive, url, checksums)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise IsscliError(f"cannot create {dest} ({error.strerror})", "choose a writable folder") from None
    written: list[Path] = []
    try:
        for split, path in targets.items():
            atomic_write(path, partial(Path.write_bytes, data=contents[split]))
            written.append(path)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return targets


def has_ptb(folder: Path) -> bool:
    return all((folder / ptb_file(split)).is_file() for split in SPLITS)

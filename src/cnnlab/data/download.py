"""``cnnlab download``: fetch MNIST or Fashion-MNIST, verified by the official MD5 sums.

Each file is tried on a list of mirrors in turn. A download goes to a temporary file in
the target folder and is renamed to its real name only once its checksum matches: a
wrong or cut-off file is discarded and the next mirror tried, so a partial file is never
left behind, and a download that fails removes the folders it created (while empty).
Files already present with the right checksum are not downloaded again.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from cnnlab.data.datasets import cache_dir
from cnnlab.errors import DownloadError

__all__ = ["CHECKSUMS", "MIRRORS", "add_cli_arguments", "download", "run_cli"]

MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
    ),
}

#: the official MD5 of each compressed file
CHECKSUMS: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}

_CHUNK = 1 << 16


def _md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _fetch(url: str, target: Path, md5: str, timeout: float, progress: bool) -> None:
    """Download ``url`` into ``target`` via a temp file; raise on any failure."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            bar = None
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=total, unit="B", unit_scale=True, desc=target.name, leave=False)
            received = 0
            try:
                for block in iter(lambda: resp.read(_CHUNK), b""):
                    out.write(block)
                    received += len(block)
                    if bar is not None:
                        bar.update(len(block))
            finally:
                if bar is not None:
                    bar.close()
            if total is not None and received != total:
                raise OSError(f"connection closed after {received} of {total} bytes")
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        got = _md5(tmp)
        if got != md5:
            raise OSError(f"checksum mismatch (MD5 {got}, expected {md5})")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def download(
    name: str,
    data_dir: str | Path | None = None,
    mirrors: list[str] | tuple[str, ...] | None = None,
    *,
    md5s: dict[str, str] | None = None,
    progress: bool = True,
    timeout: float = 30.0,
) -> Path:
    """Download the four IDX files of ``name`` into ``data_dir`` (default: the cache).

    Parameters
    ----------
    name : 'mnist' or 'fashion-mnist'
    data_dir : folder, optional
        Default ``~/.cache/cnnlab/<name>`` (or ``$CNNLAB_DATA/<name>``), where the data
        sets look when no ``--data-dir`` is given.
    mirrors : list of base URLs, optional
        Tried in order for each file (default: :data:`MIRRORS`).
    md5s : {file name: md5}, optional
        Expected checksums (default: the official ones, :data:`CHECKSUMS`).

    Returns
    -------
    Path
        The folder holding the verified files.

    Raises
    ------
    DownloadError
        A file could not be had from any mirror (each mirror's failure is listed).
        Folders this call created are removed again if they are still empty; files
        already verified stay. Nothing that existed before is touched.
    """
    if name not in CHECKSUMS:
        raise ValueError(f"cannot download {name!r}; choose one of {sorted(CHECKSUMS)}")
    folder = Path(data_dir) if data_dir is not None else cache_dir(name)
    created = _missing_folders(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _remove_empty(created)
        raise ValueError(f"cannot create {folder}: {exc.strerror or exc}") from None
    try:
        _download_all(name, folder, mirrors, md5s, progress, timeout)
    except BaseException:
        # leave no empty folders behind: remove those this call made, if still empty
        # (a verified file stays, so a second try fetches only the rest)
        _remove_empty(created)
        raise
    return folder


def _download_all(
    name: str,
    folder: Path,
    mirrors: list[str] | tuple[str, ...] | None,
    md5s: dict[str, str] | None,
    progress: bool,
    timeout: float,
) -> None:
    bases = list(mirrors) if mirrors else list(MIRRORS[name])
    verified = []
    for filename, md5 in (md5s or CHECKSUMS[name]).items():
        target = folder / filename
        if target.is_file() and _md5(target) == md5:
            verified.append(filename)
            continue
        failures = []
        for base in bases:
            url = base if base.endswith("/") else base + "/"
            try:
                _fetch(url + filename, target, md5, timeout, progress)
                verified.append(filename)
                break
            except (urllib.error.URLError, OSError, ValueError) as exc:
                reason = getattr(exc, "reason", None) or exc
                failures.append(f"{url}{filename}: {reason}")
        else:
            listing = "; ".join(failures)
            kept = (
                f" ({', '.join(verified)} verified and kept in {folder}: a second try "
                "fetches only the rest)"
                if verified
                else ""
            )
            raise DownloadError(
                f"could not download {filename} from any mirror ({listing}); if you have "
                f"the files, point --data-dir at their folder instead{kept}"
            )


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    for path in (folder, *folder.parents):
        if path.exists():
            break
        missing.append(path)
    return missing


def _remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) while they are empty; never a file."""
    for path in folders:
        try:
            path.rmdir()  # refuses a folder that is not empty
        except OSError:
            return


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cnnlab download``."""
    parser.add_argument("name", choices=sorted(CHECKSUMS), help="data set to download")
    parser.add_argument("--data-dir", help="target folder (default: ~/.cache/cnnlab/NAME)")
    parser.add_argument(
        "--mirror",
        action="append",
        metavar="URL",
        help="base URL to try (repeatable; default: the built-in list)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_cli(args: argparse.Namespace) -> int:
    """Download and report where the files are."""
    folder = download(args.name, args.data_dir, args.mirror, progress=not args.no_progress)
    print(f"{args.name}: verified files in {folder}")
    return 0

"""The public datasets, fetched into the layout `data prepare` reads (`<data.root>/movielens/`, `<data.root>/posters/`).

- MovieLens (GroupLens Research): `ml-latest-small` (9.7k films, ~1 MB) or `ml-latest` (86k films, ~335 MB), each
  zip checked against the MD5 GroupLens publishes beside it (`<zip>.md5`); `movies.csv` and `links.csv` are taken
  out of it. Research and non-commercial use; acknowledge GroupLens in what you publish.
- Posters: the URLs of the Kaggle "Movie Genre from its Poster" CSV (`imdbId,...,Poster`; a local file or a URL),
  saved as `posters/tt<imdbId>.jpg`, which is where the movielens source looks for them.

Archives stream into `<name>.part` and are renamed only when complete and checked. A transfer cut short is resumed
from where it stopped (an HTTP Range request), within the run (`retries`) and by running the command again; a
checksum that does not match deletes the part file (its bytes cannot be trusted) and is an error naming both sums.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import socket
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm

from movietitles.config import ConfigError
from movietitles.data.download import USER_AGENT, download_posters, retryable_status
from movietitles.io import atomic_write_bytes

GROUPLENS = "https://files.grouplens.org/datasets/movielens"
MOVIELENS = ("ml-latest-small", "ml-latest")
MOVIELENS_FILES = ("movies.csv", "links.csv")  # what the movielens source reads
CHUNK = 1 << 16


class DatasetDownloadError(ConfigError):
    """A dataset that could not be fetched or checked; the message says what to do next."""


def download_movielens(root: str | Path, variant: str = "ml-latest-small", base_url: str = GROUPLENS,
                       retries: int = 3, timeout_s: float = 60, progress: bool = True) -> Path:
    """`<base_url>/<variant>.zip`, checked against `<variant>.zip.md5`, unpacked to `<root>/movielens/`."""
    if variant not in MOVIELENS:
        raise DatasetDownloadError(f"unknown MovieLens variant {variant!r}; expected one of {', '.join(MOVIELENS)}")
    root = Path(root)
    archive = root / "downloads" / f"{variant}.zip"
    url = f"{base_url.rstrip('/')}/{variant}.zip"
    if not archive.is_file():
        expected = published_md5(url + ".md5", timeout_s)
        part = download_resumable(url, archive.with_name(archive.name + ".part"), retries, timeout_s, progress)
        actual = md5_of(part)
        if actual != expected:
            part.unlink()
            raise DatasetDownloadError(f"{url}: checksum mismatch (MD5 {actual}, GroupLens publishes {expected}); "
                                       "the partial download was deleted, run the command again")
        os.replace(part, archive)
    return unpack_movielens(archive, root / "movielens")


def published_md5(url: str, timeout_s: float) -> str:
    """The MD5 in GroupLens's checksum file (`MD5 (ml-latest.zip) = <hex>`, or the bare hex digest)."""
    try:
        with urllib.request.urlopen(_request(url), timeout=timeout_s) as response:
            text = response.read(4096).decode("ascii", "replace")
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
        raise DatasetDownloadError(f"{url}: the published checksum cannot be fetched ({_reason(e)}); "
                                   "check the network and run the command again") from None
    found = re.search(r"\b[0-9a-fA-F]{32}\b", text)
    if found is None:
        raise DatasetDownloadError(f"{url}: no MD5 digest in {text[:80]!r}")
    return found.group(0).lower()


def download_resumable(url: str, part: Path, retries: int = 3, timeout_s: float = 60, progress: bool = True,
                       backoff_s: float = 1.0) -> Path:
    """Stream `url` into `part`, continuing from the bytes already there; return `part` once complete."""
    part.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(retries + 1):
        try:
            _continue_download(url, part, timeout_s, progress)
            return part
        except urllib.error.HTTPError as e:
            if not retryable_status(e.code):
                raise DatasetDownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
            reason = f"HTTP {e.code}"
        except (urllib.error.URLError, http.client.HTTPException, OSError, _Incomplete) as e:
            reason = _reason(e)
        if attempt < retries:
            time.sleep(backoff_s * 2 ** attempt)
    have = part.stat().st_size if part.exists() else 0
    raise DatasetDownloadError(f"{url}: interrupted ({reason}) after {have:,} bytes, kept in {part}; "
                               "run the same command again to resume")


class _Incomplete(Exception):
    pass


def _continue_download(url: str, part: Path, timeout_s: float, progress: bool) -> None:
    have = part.stat().st_size if part.exists() else 0
    request = _request(url, {"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to send: the part file is whole (the checksum decides)
            return
        raise
    with response:
        resumed = response.status == 206 and _range_start(response.headers.get("Content-Range")) == have
        start = have if resumed else 0  # a server that ignores Range sends the whole file again
        length = response.headers.get("Content-Length")
        total = start + int(length) if length and length.isdigit() else None
        with open(part, "ab" if resumed else "wb") as out, tqdm(
                total=total, initial=start, unit="B", unit_scale=True, desc=part.name.removesuffix(".part"),
                disable=not progress, mininterval=0.5) as bar:
            received = start
            while chunk := response.read(CHUNK):
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if total is not None and received != total:
        raise _Incomplete(f"{received:,} of {total:,} bytes")


def _range_start(content_range: str | None) -> int | None:
    found = re.match(r"bytes (\d+)-", content_range or "")
    return int(found.group(1)) if found else None


def md5_of(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, lambda: hashlib.md5(usedforsecurity=False)).hexdigest()


def unpack_movielens(archive: Path, folder: Path) -> Path:
    """`movies.csv` and `links.csv` from the archive (in its one top folder) into `folder`, each atomically."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = {Path(name).name: name for name in zf.namelist() if Path(name).name in MOVIELENS_FILES}
            missing = [name for name in MOVIELENS_FILES if name not in members]
            if missing:
                raise DatasetDownloadError(f"{archive}: no {', '.join(missing)} in the archive; is it MovieLens?")
            for name in MOVIELENS_FILES:
                atomic_write_bytes(folder / name, zf.read(members[name]))
    except zipfile.BadZipFile as e:
        raise DatasetDownloadError(f"{archive}: not a readable zip ({e}); delete it and run the command again"
                                   ) from None
    return folder


def download_kaggle_posters(root: str | Path, csv: str, workers: int = 8, timeout_s: float = 20, retries: int = 3,
                            progress: bool = True, max_bytes: int | None = None) -> tuple[int, list]:
    """Every poster URL of the Kaggle CSV (`csv`: a path or a URL) into `<root>/posters/tt<imdbId>.jpg`.
    Returns (posters now there, failed DownloadResults)."""
    from movietitles.data.sources import read_kaggle

    root = Path(root)
    local = root / "downloads" / "MovieGenre.csv"
    if csv.lower().startswith(("http://", "https://")):
        if not local.is_file():
            os.replace(download_resumable(csv, local.with_name(local.name + ".part"), retries, timeout_s, progress),
                       local)
    else:
        local.parent.mkdir(parents=True, exist_ok=True)
        if Path(csv).resolve() != local.resolve():
            shutil.copyfile(csv, local)
    records, _ = read_kaggle(local)
    wanted = [(rec.id, rec.poster_url) for rec in records if rec.poster_url]
    results = download_posters(wanted, root / "posters", workers=workers, timeout_s=timeout_s, retries=retries,
                               progress=progress, max_bytes=max_bytes)
    return sum(r.path is not None for r in results), [r for r in results if r.path is None]


def _request(url: str, headers: dict | None = None) -> urllib.request.Request:
    return urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **(headers or {})})


def _reason(e: BaseException) -> str:
    if isinstance(e, socket.timeout):
        return "timed out"
    return f"{type(e).__name__}: {getattr(e, 'reason', e)}"

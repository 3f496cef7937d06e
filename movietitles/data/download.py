"""Resumable poster downloader (stdlib urllib, a thread per worker).

Each poster streams into a temp file in the target folder and is renamed to `<id>.jpg`
only once complete and only if it starts like an image (JPEG, PNG, GIF, BMP, WebP): an HTML
error page sent with status 200 is retried, then reported as `not_an_image`. A response over
`max_bytes` (the image encoder's limit: a bigger poster would be refused anyway) is cut off there and
reported as `too_large`, so an endless response cannot fill the disk. Files already there that look
like images are skipped, so a re-run resumes. Failures are returned with a reason (after `retries`
further attempts for transient errors) and never stop the run.
"""

from __future__ import annotations

import http.client
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from movietitles.io import file_name_for, replacing_file

USER_AGENT = "Mozilla/5.0 (compatible; movietitles poster downloader)"
CHUNK = 64 * 1024


@dataclass(frozen=True)
class DownloadResult:
    id: str
    url: str
    path: Path | None       # the finished file; None when failed
    status: str             # "downloaded" | "cached" | "failed"
    reason: str | None = None
    attempts: int = 0


class _Retryable(Exception):
    pass


class _TooLarge(Exception):
    pass


def download_posters(items: list[tuple[str, str]], out_dir: str | Path, workers: int = 8,
                     timeout_s: float = 20, retries: int = 3, backoff_s: float = 1.0,
                     progress: bool = True, max_bytes: int | None = None) -> list[DownloadResult]:
    """Download (id, url) pairs to `out_dir/<id>.jpg` (the id made a safe file name: `file_name_for`);
    results in input order."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[int, DownloadResult] = {}
    with ThreadPoolExecutor(max(1, workers)) as pool:
        futures = {
            pool.submit(download_one, mid, url, out_dir / f"{file_name_for(mid)}.jpg", timeout_s, retries, backoff_s,
                        max_bytes): i
            for i, (mid, url) in enumerate(items)
        }
        bar = tqdm(as_completed(futures), total=len(futures), desc="downloading posters",
                   unit="poster", disable=not progress, mininterval=0.5)
        for future in bar:
            results[futures[future]] = future.result()
    return [results[i] for i in range(len(items))]


def download_one(mid: str, url: str, dest: Path, timeout_s: float = 20, retries: int = 3,
                 backoff_s: float = 1.0, max_bytes: int | None = None) -> DownloadResult:
    if dest.is_file() and looks_like_image(_head(dest)):
        return DownloadResult(mid, url, dest, "cached")
    if not url.lower().startswith(("http://", "https://")):
        return DownloadResult(mid, url, None, "failed", f"bad_url: {url!r}")
    for attempt in range(1, retries + 2):
        try:
            fetch(url, dest, timeout_s, max_bytes)
            return DownloadResult(mid, url, dest, "downloaded", attempts=attempt)
        except _Retryable as e:
            reason = str(e)
        except _TooLarge as e:  # the same file again would be as large
            return DownloadResult(mid, url, None, "failed", str(e), attempt)
        except urllib.error.HTTPError as e:  # 4xx other than 408/429: retrying will not help
            return DownloadResult(mid, url, None, "failed", f"http_{e.code}: {e.reason}", attempt)
        except Exception as e:  # noqa: BLE001 - one poster must never stop the run
            return DownloadResult(mid, url, None, "failed", f"error: {type(e).__name__}: {e}", attempt)
        if attempt <= retries:
            time.sleep(backoff_s * 2 ** (attempt - 1))
    return DownloadResult(mid, url, None, "failed", reason, retries + 1)


# (offset, bytes) that start the image formats posters come in (and tf.io.decode_image reads).
JPEG_MAGIC, PNG_MAGIC = b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"
IMAGE_MAGIC = ((0, JPEG_MAGIC), (0, PNG_MAGIC), (0, b"GIF87a"), (0, b"GIF89a"), (0, b"BM"), (8, b"WEBP"))


def retryable_status(code: int) -> bool:
    """An HTTP status worth asking again for (a timeout, too many requests, a server error); other 4xx are final."""
    return code in (408, 429) or code >= 500


def looks_like_image(head: bytes) -> bool:
    """`head` (a file's first 16 bytes or more) starts a JPEG, PNG, GIF, BMP or WebP file."""
    return any(head[offset:offset + len(magic)] == magic for offset, magic in IMAGE_MAGIC)


def _head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(16)


def fetch(url: str, dest: Path, timeout_s: float, max_bytes: int | None = None) -> None:
    """Stream `url` to `dest` via a temp file and an atomic rename; raise on any failure, and stop reading past
    `max_bytes`."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with replacing_file(dest, suffix=".part") as tmp, open(tmp, "wb") as out:
        head = b""
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                expected = response.headers.get("Content-Length")
                if max_bytes is not None and expected is not None and expected.isdigit() and int(expected) > max_bytes:
                    raise _TooLarge(f"too_large: {expected} bytes announced, over max_bytes {max_bytes}")
                received = 0
                while chunk := response.read(CHUNK):
                    received += len(chunk)
                    if max_bytes is not None and received > max_bytes:
                        raise _TooLarge(f"too_large: over max_bytes {max_bytes} (stopped reading there)")
                    out.write(chunk)
                    head = (head + chunk)[:16] if len(head) < 16 else head
        except urllib.error.HTTPError as e:
            if retryable_status(e.code):
                raise _Retryable(f"http_{e.code}: {e.reason}") from e
            raise
        except (urllib.error.URLError, http.client.HTTPException, socket.timeout,
                ConnectionError, TimeoutError) as e:
            raise _Retryable(f"network: {type(e).__name__}: {getattr(e, 'reason', e)}") from e
        if expected is not None and received != int(expected):
            raise _Retryable(f"incomplete: {received} of {expected} bytes")
        if received == 0:
            raise _Retryable("incomplete: empty response")
        if not looks_like_image(head):
            raise _Retryable(f"not_an_image: the response ({received} bytes) starts with {head[:16]!r}")

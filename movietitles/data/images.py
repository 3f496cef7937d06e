"""Poster checks: every poster is fully decoded once; bad ones are fixed or skipped with a reason.

status "ok": a usable RGB JPEG as it is; "fixed": usable after conversion to RGB JPEG
(`fixed_image` holds the converted image); "skipped": unusable (`reason` says why).
Reasons are "code" or "code: detail" (codes: empty_file, too_large, unreadable, truncated,
decompression_bomb, absurd_size, mode_<MODE>, alpha_<MODE>, not_jpeg). `cfg_image` may hold
max_bytes and max_pixels (the image encoder's limits): larger files are skipped before decoding.
"""

from __future__ import annotations

import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from movietitles.io import atomic_write_bytes

FIXED_JPEG_QUALITY = 95


@dataclass
class PosterCheck:
    status: str                 # "ok" | "fixed" | "skipped"
    reason: str | None
    width: int | None
    height: int | None
    sha256: str | None          # of the file bytes
    fixed_image: Image.Image | None = None


def inspect_poster(path: str | Path, cfg_image: dict) -> PosterCheck:
    """Read, hash and fully decode one poster; never raises for a bad file."""
    max_bytes = cfg_image.get("max_bytes")
    try:
        size = os.path.getsize(path)
        if max_bytes is not None and size > max_bytes:
            return PosterCheck("skipped", f"too_large: {size} bytes (over max_bytes {max_bytes})", None, None, None)
        data = Path(path).read_bytes()
    except OSError as e:
        return PosterCheck("skipped", f"unreadable: {e.strerror or e}", None, None, None)
    sha = hashlib.sha256(data).hexdigest()
    if not data:
        return PosterCheck("skipped", "empty_file", None, None, sha)

    width = height = None
    try:
        img = Image.open(io.BytesIO(data))
        width, height = img.size
        bad_size = _absurd_size(width, height, cfg_image)
        if bad_size:
            return PosterCheck("skipped", f"absurd_size: {width}x{height} {bad_size}", width, height, sha)
        img.load()  # full decode: truncation only shows here
    except Image.DecompressionBombError as e:
        return PosterCheck("skipped", f"decompression_bomb: {e}", width, height, sha)
    except UnidentifiedImageError:
        return PosterCheck("skipped", "unreadable: not an image Pillow can identify", width, height, sha)
    except (OSError, SyntaxError, ValueError) as e:
        code = "truncated" if "truncated" in str(e).lower() else "unreadable"
        return PosterCheck("skipped", f"{code}: {e}", width, height, sha)

    if img.mode == "RGB" and img.format == "JPEG":
        return PosterCheck("ok", None, width, height, sha)
    fixed, reason = _to_rgb(img)
    if img.format != "JPEG":
        reason = f"{reason}: {img.format} data in a .jpg" if reason else f"not_jpeg: {img.format} data"
    return PosterCheck("fixed", reason, width, height, sha, fixed)


def check_and_fix(path: str | Path, cfg_image: dict, fixed_path: str | Path) -> PosterCheck:
    """inspect_poster, then write a fixed poster as JPEG to `fixed_path` (atomically)."""
    check = inspect_poster(path, cfg_image)
    if check.status == "fixed":
        atomic_write_bytes(fixed_path, encode_jpeg(check.fixed_image))
        check = replace(check, fixed_image=None)  # keep memory flat over 20k posters
    return check


def check_posters(items: list[tuple[Path, Path]], cfg_image: dict, workers: int | None = None,
                  progress: bool = True) -> list[PosterCheck]:
    """check_and_fix over (poster, fixed_path) pairs in parallel threads, in input order.

    Threads suffice: Pillow decodes and hashlib hashes with the GIL released.
    """
    workers = workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(lambda item: check_and_fix(item[0], cfg_image, item[1]), items)
        return list(tqdm(results, total=len(items), desc="checking posters", unit="poster",
                         disable=not progress, mininterval=0.5))


def encode_jpeg(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=FIXED_JPEG_QUALITY)
    return buffer.getvalue()


def _absurd_size(width: int, height: int, cfg_image: dict) -> str | None:
    min_side, max_side = cfg_image.get("min_side", 32), cfg_image.get("max_side", 10000)
    max_aspect = cfg_image.get("max_aspect", 4.0)
    if min(width, height) < min_side:
        return f"(a side below min_side {min_side})"
    if max(width, height) > max_side:
        return f"(a side above max_side {max_side})"
    if max(width, height) / min(width, height) > max_aspect:
        return f"(aspect beyond max_aspect {max_aspect})"
    if cfg_image.get("max_pixels") is not None and width * height > cfg_image["max_pixels"]:
        return f"(over max_pixels {cfg_image['max_pixels']})"
    return None


def _to_rgb(img: Image.Image) -> tuple[Image.Image, str | None]:
    """RGB copy of `img`; transparent images are composited on white."""
    mode = img.mode
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info)
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB"), f"alpha_{mode}"
    if mode == "RGB":
        return img, None
    return img.convert("RGB"), f"mode_{mode}"

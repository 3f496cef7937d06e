"""A poster image file named on the command line (`predict --poster`, `generate --poster`), read safely.

What the path is gets said in plain words (a directory, a pipe, a symbolic-link loop, empty, too large, not an
image), nothing that could block is opened (a FIFO, `<(cat poster.jpg)`, a device), and sizes are the file's own:
the byte size from the file system and the pixel size from the image header, both before anything is decoded.
"""

from __future__ import annotations

import errno
import io
import os
import stat
from pathlib import Path

from movietitles.data.download import looks_like_image


class PosterFileError(ValueError):
    """A poster file that cannot be used: the message names the path and says why."""


def read_poster_file(path: str | Path, max_bytes: int, max_pixels: int | None = None) -> bytes:
    """The file's bytes, once it is known to be a regular file, not empty, at most `max_bytes` bytes (and with
    `max_pixels`, at most that many pixels) and starting like a JPEG, PNG, GIF, BMP or WebP image."""
    path = Path(path)
    try:
        info = os.stat(path)  # follows symbolic links
    except FileNotFoundError:
        if os.path.islink(path):
            raise PosterFileError(f"poster {path} is a symbolic link to {os.readlink(path)}, which does not exist")
        raise PosterFileError(f"poster {path} not found") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise PosterFileError(f"poster {path} is a loop of symbolic links") from None
        raise PosterFileError(f"cannot read poster {path}: {e.strerror or e}") from None
    if stat.S_ISDIR(info.st_mode):
        raise PosterFileError(f"poster {path} is a directory, not an image file")
    if stat.S_ISFIFO(info.st_mode):
        raise PosterFileError(f"poster {path} is a pipe (a FIFO, or a process substitution such as <(cat x.jpg)), "
                              "which can wait for ever: save the image to a file and give that")
    if not stat.S_ISREG(info.st_mode):
        raise PosterFileError(f"poster {path} is a device or socket, not an image file")
    if info.st_size == 0:
        raise PosterFileError(f"poster {path} is empty (0 bytes)")
    if info.st_size > max_bytes:
        raise PosterFileError(f"poster {path} is {info.st_size:,} bytes, over the limit of {max_bytes:,} bytes "
                              "(encoders.image.max_bytes)")
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise PosterFileError(f"cannot read poster {path}: {e.strerror or e}") from None
    if not looks_like_image(data[:16]):
        raise PosterFileError(f"poster {path} is not a JPEG, PNG, GIF, BMP or WebP image "
                              f"(its {len(data):,} bytes start with {data[:8]!r})")
    if max_pixels is not None:
        width, height = image_size(path, data)
        if width * height > max_pixels:
            raise PosterFileError(f"poster {path} is {width} x {height} pixels, over the limit of {max_pixels:,} "
                                  "pixels (encoders.image.max_pixels)")
    return data


def image_size(path: Path, data: bytes) -> tuple[int, int]:
    """(width, height) from the image's header, without decoding it."""
    from PIL import Image

    bomb_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # only the header is read; max_pixels decides
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception as e:  # noqa: BLE001 - PIL's header readers vary
        raise PosterFileError(f"poster {path} could not be decoded: {e}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = bomb_limit

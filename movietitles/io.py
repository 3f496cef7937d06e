"""Atomic writes: a reader never sees a half-written output, even after a crash.

Each output is written to a hidden temporary file (or folder) beside it, flushed to disk and renamed
over the old one, so a crash leaves the previous version whole. Outputs get the usual permissions
(0666 for files, 0777 for folders, less the umask), not the private ones of a temporary file.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np


def _read_umask() -> int:
    try:  # Linux: read it without changing it (os.umask would, for every thread)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a plain open() gives a new file: 0666 less the process's umask."""
    return 0o666 & ~_read_umask()


@contextlib.contextmanager
def replacing_file(path: str | Path, suffix: str = ".tmp"):
    """A temporary path beside `path` to write to; when the block ends without error the file gets the usual
    permissions, is synced, and replaces `path` in one rename. A crash leaves the previous file whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fchmod(f.fileno(), file_mode())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def directory_in_progress(target: str | Path):
    """A hidden temporary folder beside `target` to write a directory into; the caller renames it into
    place once complete (os.replace, or os.rename to claim a new name). Removed if still there at the end."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        os.chmod(tmp, 0o777 & ~_read_umask())
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with replacing_file(path) as tmp:
        tmp.write_bytes(data)


def atomic_save_model(model, path: str | Path) -> None:
    """`model.save(path)` (a .keras file) atomically: a crash during the save keeps the previous file whole."""
    with replacing_file(path, suffix=f".tmp{Path(path).suffix}") as tmp:
        model.save(tmp)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_npz(path: str | Path, **arrays: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def atomic_save_npy(path: str | Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array)
    atomic_write_bytes(path, buffer.getvalue())


def file_name_for(movie_id: str) -> str:
    """A file name (no extension) for a movie id: the id itself when it is a plain name (`tt0114709`), otherwise
    its safe characters and a digest of the id, so that distinct ids (`a/b`, `a_b`) never share a file."""
    if re.fullmatch(r"\w[\w.-]*", movie_id) and len(movie_id) <= 100:
        return movie_id
    safe = re.sub(r"[^\w.-]", "_", movie_id)[:80].lstrip(".") or "id"
    return f"{safe}-{hashlib.sha256(movie_id.encode('utf-8')).hexdigest()[:12]}"


class DamagedFile(ValueError):
    """A file this project wrote that cannot be read back (cut short by a full disk, corrupted): the message names
    the file and what to run to make it again."""


def read_written(path: str | Path, read, remedy: str):
    """`read(path)`, or DamagedFile naming `path`, the reason and `remedy` when the file exists but cannot be read."""
    try:
        return read(path)
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001 - the readers (Keras, numpy, json) each fail in their own way
        reason = " ".join(str(e).split())[:200] or type(e).__name__
        raise DamagedFile(f"{path} is damaged and cannot be read ({type(e).__name__}: {reason}): {remedy}") from None

"""Words printed on a poster, read offline with the PP-OCRv4 models that `rapidocr-onnxruntime` ships.

Each poster becomes a list of lines `{"text", "box", "confidence"}`, `box` being the four corners
`[[x, y], ...]` in the poster's own pixels (clockwise from top left), top to bottom.

Engines (`encoders.ocr.engine`):
- `ppocr_batched` (default, `movietitles/encoders/ppocr.py`): posters and their text lines in batches, fused
  graphs, one single-threaded onnxruntime session per worker process (`workers`, default every core).
- `rapidocr`: the stock `RapidOCR()` call, one poster at a time (what `benchmarks/ocr.py` compares with).

The text detector sees the poster scaled so its short side is `det_limit_side_len` pixels. Our posters are
thumbnails (short side ~160); a title word of 3+ letters was read as often at 320 as at 480 or 736, in half the
time, and far less often at the thumbnail's own size (54% of 300 posters against 68%): 320 is the default.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from importlib import metadata
from multiprocessing import get_context
from pathlib import Path
from typing import Sequence

ENGINES = ("ppocr_batched", "rapidocr")
INSTALL_HINT = 'poster text needs the OCR engine: pip install -e .'
POSTERS_PER_TASK = 32  # posters a worker reads in one batch


def _engine_version() -> str:
    try:
        return metadata.version("rapidocr-onnxruntime")
    except metadata.PackageNotFoundError:
        raise ImportError(INSTALL_HINT) from None


def _engine(config: dict) -> str:
    engine = config.get("engine", "ppocr_batched")
    if engine not in ENGINES:
        raise ValueError(f"encoders.ocr.engine: unknown engine {engine!r}; expected one of {ENGINES}")
    if engine == "ppocr_batched" and config.get("use_angle_cls", False):
        raise ValueError("encoders.ocr.use_angle_cls: only the rapidocr engine turns lines; set engine: rapidocr")
    return engine


def poster_text_cache_key(config: dict) -> str:
    """Which cache holds the text read with `encoders.ocr` (without loading the engine)."""
    engine, version, side = _engine(config), _engine_version(), int(config.get("det_limit_side_len", 320))
    if engine == "rapidocr":
        return f"rapidocr-{version}-det{side}" + ("-cls" if config.get("use_angle_cls", False) else "")
    width, height = int(config.get("rec_min_width", 0)), int(config.get("min_line_height", 0))
    return f"ppocr-batched-{version}-det{side}-w{width}" + (f"-h{height}" if height else "")


def read_image(path: str | Path):
    """A poster file as a BGR uint8 array, or a ValueError naming the file. Formats OpenCV does not decode
    (GIF) are read with Pillow (the first frame)."""
    import cv2
    import numpy as np

    data = np.fromfile(str(path), np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None and data.size:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as picture:
                image = cv2.cvtColor(np.asarray(picture.convert("RGB")), cv2.COLOR_RGB2BGR)
        except (UnidentifiedImageError, OSError):
            image = None
    if image is None:
        raise ValueError(f"{path}: not a readable image")
    return image


_worker_reader = None


def _start_worker(config: dict) -> None:
    global _worker_reader
    _worker_reader = _batched_reader(config, threads=1)


def _read_in_worker(paths: list[str]) -> list[list[dict]]:
    return _worker_reader.read_images([read_image(p) for p in paths])


def _batched_reader(config: dict, threads: int):
    from movietitles.encoders.ppocr import BatchedPPOCR

    return BatchedPPOCR(int(config.get("det_limit_side_len", 320)), threads=threads,
                        rec_batch_size=int(config.get("rec_batch_size", 32)),
                        rec_min_width=int(config.get("rec_min_width", 0)),
                        min_line_height=int(config.get("min_line_height", 0)))


class PosterTextReader:
    """`read(path)` for one poster, `read_files(paths)` for many (in `workers` processes)."""

    def __init__(self, config: dict):
        self.engine = _engine(config)
        self.cache_key = poster_text_cache_key(config)
        self.config = dict(config)
        self.side = int(config.get("det_limit_side_len", 320))
        self.use_angle_cls = bool(config.get("use_angle_cls", False))
        self.workers = int(config.get("workers") or os.cpu_count() or 1)
        threads = config.get("threads")  # per process; null: 1 for ppocr_batched, onnxruntime's default for rapidocr
        if self.engine == "rapidocr":
            from rapidocr_onnxruntime import RapidOCR

            self._ocr = RapidOCR(det_limit_side_len=self.side, det_limit_type="min",
                                 **({"intra_op_num_threads": int(threads)} if threads else {}))
        else:
            self._ocr = None  # built on first use in this process (the worker processes build their own)
        self._threads = int(threads or 1)
        self._pool = None

    def read(self, path: str | Path) -> list[dict]:
        """The text lines found on the poster at `path`, top to bottom."""
        return self.read_files([path])[0]

    def read_files(self, paths: Sequence[str | Path]) -> list[list[dict]]:
        paths = [str(p) for p in paths]
        if self.engine == "rapidocr":
            return [self._stock_read(p) for p in paths]
        tasks = [paths[i:i + POSTERS_PER_TASK] for i in range(0, len(paths), POSTERS_PER_TASK)]
        if self.workers <= 1 or len(tasks) <= 1:
            if self._ocr is None:
                self._ocr = _batched_reader(self.config, self._threads)
            return [lines for task in tasks for lines in self._ocr.read_images([read_image(p) for p in task])]
        if self._pool is None:
            # spawn, not fork: the parent may hold TensorFlow's threads
            self._pool = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"),
                                             initializer=_start_worker, initargs=(self.config,))
        return [lines for part in self._pool.map(_read_in_worker, tasks) for lines in part]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _stock_read(self, path: str) -> list[dict]:
        result, _ = self._ocr(path, use_cls=self.use_angle_cls)
        return [
            {"text": text, "box": [[round(float(x), 1), round(float(y), 1)] for x, y in box],
             "confidence": round(float(confidence), 4)}
            for box, text, confidence in (result or [])
        ]


def line_height(line: dict) -> float:
    ys = [y for _, y in line["box"]]
    return max(ys) - min(ys)


def poster_words(lines: list[dict], min_confidence: float = 0.0) -> str:
    """The text of a poster's lines as one string, largest lettering first (titles are usually printed
    largest), lines of lower confidence left out."""
    kept = [line for line in lines if line["confidence"] >= min_confidence]
    return " ".join(line["text"] for line in sorted(kept, key=line_height, reverse=True))

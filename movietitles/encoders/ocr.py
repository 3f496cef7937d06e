"""Words printed on a poster, read by an offline OCR engine: `rapidocr-onnxruntime` (PP-OCR models in the wheel).

`pip install -e ".[ocr]"`. Each poster becomes a list of lines `{"text", "box", "confidence"}`, `box` being the
four corners `[[x, y], ...]` in the poster's own pixels (clockwise from top left).

The text detector sees the poster scaled so its short side is `det_limit_side_len` pixels. Our posters are
thumbnails (short side ~160); measured on 60 random posters (AMD EPYC, 2 cores), a title word of 3+ letters was
read on 25-27 of them at 320, 480 or 736 pixels, at 0.17, 0.23 and 0.36 s a poster: 320 is the default.
"""

from __future__ import annotations

from importlib import metadata

ENGINES = ("rapidocr",)


def poster_text_cache_key(config: dict) -> str:
    """Which cache holds the text read with `encoders.ocr` (without loading the engine)."""
    try:
        version = metadata.version("rapidocr-onnxruntime")
    except metadata.PackageNotFoundError:
        raise ImportError("poster text needs the OCR engine: pip install -e \".[ocr]\"") from None
    side = int(config.get("det_limit_side_len", 320))
    return f"rapidocr-{version}-det{side}" + ("-cls" if config.get("use_angle_cls", False) else "")


class PosterTextReader:
    def __init__(self, config: dict):
        engine = config.get("engine", "rapidocr")
        if engine not in ENGINES:
            raise ValueError(f"encoders.ocr.engine: unknown engine {engine!r}; expected one of {ENGINES}")
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as error:
            raise ImportError("poster text needs the OCR engine: pip install -e \".[ocr]\"") from error
        self.side = int(config.get("det_limit_side_len", 320))
        self.use_angle_cls = bool(config.get("use_angle_cls", False))
        threads = config.get("threads")  # null: onnxruntime's default (every core)
        self._ocr = RapidOCR(det_limit_side_len=self.side, det_limit_type="min",
                             **({"intra_op_num_threads": int(threads)} if threads else {}))
        self.cache_key = poster_text_cache_key(config)

    def read(self, path: str) -> list[dict]:
        """The text lines found on the poster at `path`, top to bottom as the engine orders them."""
        result, _ = self._ocr(str(path), use_cls=self.use_angle_cls)
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

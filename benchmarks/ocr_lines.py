"""Which text lines could the poster reader skip? Worked out from a filled poster-text cache, without OCR.

    python benchmarks/ocr_lines.py                  # the default config's cache (features --kinds poster_text)

Recognition is most of the reader's cost, one text line at a time; a line not recognised is time saved. For each
rule of which lines to keep (by height in the poster's own pixels, the tallest few, or relative to the poster's
tallest line), prints the lines kept per poster and the share of posters whose kept text holds any / all of the
title's words (3+ characters, as `coverage.md` counts them), against every line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package first

import numpy as np  # noqa: E402

from movietitles.artefacts import cache_key, feature_store  # noqa: E402
from movietitles.config import apply_override, load_config  # noqa: E402
from movietitles.data.dataset import load_prepared  # noqa: E402
from movietitles.encoders.ocr import line_height  # noqa: E402
from movietitles.features.extract import poster_rows  # noqa: E402
from movietitles.features.pipeline import poster_text  # noqa: E402
from movietitles.features.poster_text_coverage import title_found  # noqa: E402


def tallest(lines: list[dict], k: int) -> float:
    return sorted(map(line_height, lines), reverse=True)[:k][-1]


RULES = {
    "every line": lambda line, lines: True,
    **{f"height >= {h} px": (lambda line, lines, h=h: line_height(line) >= h) for h in (8, 10, 12)},
    **{f"the {k} tallest": (lambda line, lines, k=k: line_height(line) >= tallest(lines, k)) for k in (1, 2, 3, 4)},
    **{f"height >= {r} x the tallest": (lambda line, lines, r=r: line_height(line) >= r * tallest(lines, 1))
       for r in (0.2, 0.3, 0.5)},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides")
    args = parser.parse_args()
    config = load_config()
    for item in args.set:
        apply_override(config, item)
    rows = poster_rows(load_prepared(config["data"]["prepared_dir"]).movies)
    lines_per_poster = poster_text(feature_store(config), rows["id"].tolist())
    titles = rows["title"].tolist()
    every = sum(map(len, lines_per_poster))
    print(f"{len(rows)} posters, cache {cache_key(config, 'poster_text')}")
    for name, keep in RULES.items():
        kept = [[line for line in lines if keep(line, lines)] for lines in lines_per_poster]
        found = np.array([title_found(title, lines) for title, lines in zip(titles, kept)])
        count = sum(map(len, kept))
        print(f"{name:28s} lines {count / len(kept):.2f} a poster ({100 * count / every:.0f}%), title words "
              f"any {100 * found[:, 0].mean():.1f}%, all {100 * found[:, 1].mean():.1f}%")


if __name__ == "__main__":
    main()

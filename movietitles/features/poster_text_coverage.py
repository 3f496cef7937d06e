"""How often the text read on a poster holds its title: overall, by decade and by genre.

A title word counts if it has three or more letters or digits (so "the" counts, "a" and "of" not) and
appears in the poster's text, both lowercased with everything but letters and digits removed. OCR often
misses the spaces between words ("SHIRINNLOVE"), so a word is found when it is a substring of the
poster's text with its spaces removed. "any word": at least one title word found; "all words": every one.
Posters whose title has no word of three characters count in neither.
"""

from __future__ import annotations

import re

import pandas as pd

from movietitles.encoders.ocr import poster_words
from movietitles.markdown import markdown_table

MIN_WORD = 3


def _squash(text: str) -> str:
    return re.sub(r"[\W_]+", "", text.casefold())


def title_words(title: str) -> list[str]:
    return [w for w in (_squash(word) for word in title.split()) if len(w) >= MIN_WORD]


def title_found(title: str, lines: list[dict], min_confidence: float = 0.0) -> tuple[bool, bool]:
    """(any title word found, all title words found) in the poster's OCR lines."""
    words = title_words(title)
    text = _squash(poster_words(lines, min_confidence))
    found = [w in text for w in words]
    return (any(found), bool(found) and all(found))


def coverage_tables(movies: pd.DataFrame, lines_per_poster: list[list[dict]], genres: list[str],
                    min_confidence: float = 0.0) -> dict[str, pd.DataFrame]:
    """Share of posters whose text holds any / all of the title's words: "overall", "by decade", "by genre"."""
    hits = pd.DataFrame([title_found(t, lines, min_confidence) for t, lines in zip(movies["title"], lines_per_poster)],
                        columns=["any word", "all words"], index=movies.index, dtype=bool)
    hits["posters"] = 1
    hits["with text"] = [bool(poster_words(lines, min_confidence).strip()) for lines in lines_per_poster]

    def summarise(groups) -> pd.DataFrame:
        table = groups.agg({"posters": "sum", "with text": "mean", "any word": "mean", "all words": "mean"})
        return table.rename(columns={"with text": "share with any text", "any word": "share with any title word",
                                     "all words": "share with all title words"})

    decade = (pd.to_numeric(movies["year"], errors="coerce") // 10 * 10).astype("Int64").astype(str) + "s"
    decade = decade.where(~pd.to_numeric(movies["year"], errors="coerce").isna(), "unknown")
    by_genre = []
    genre_lists = movies["genres"].fillna("").str.split("|")
    for genre in genres:
        rows = genre_lists.map(lambda names, g=genre: g in names)
        if rows.any():
            by_genre.append(summarise(hits[rows].assign(genre=genre).groupby("genre")))
    return {"overall": summarise(hits.assign(all="all posters").groupby("all")),
            "by decade": summarise(hits.groupby(decade.rename("decade"))),
            "by genre": pd.concat(by_genre) if by_genre else summarise(hits.iloc[:0].assign(genre="").groupby("genre"))}


def coverage_markdown(tables: dict[str, pd.DataFrame]) -> str:
    def rows(table: pd.DataFrame) -> list[list]:
        return [[name, int(row["posters"]), *row.iloc[1:].astype(float)] for name, row in table.iterrows()]

    return __doc__.split("\n\n", 1)[1].strip() + "\n\n" + "\n\n".join(
        f"## {name}\n\n{markdown_table([table.index.name or '', *table.columns], rows(table))}"
        for name, table in tables.items())

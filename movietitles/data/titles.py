"""Title cleaning: MovieLens-style raw titles into (title, year, alternative titles).

    clean_title("Star Maker, The (Uomo delle stelle, L') (1995)")
    -> CleanTitle(title="The Star Maker", year=1995, aka="L'Uomo delle stelle")

`aka` is one string: the alternative titles in their original order joined by " | "
(AKA_SEPARATOR), "" when there are none; `CleanTitle.akas` gives them as a list.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

AKA_SEPARATOR = " | "

# Articles that MovieLens moves to the end ("Brave, The"). Matched case-insensitively.
# English, French, Spanish, Italian, German, Dutch, Portuguese, Scandinavian.
ARTICLES = frozenset(a.casefold() for a in (
    "The", "A", "An",
    "Le", "La", "Les", "L'", "L’", "Un", "Une", "Des",
    "El", "Los", "Las", "Una", "Uno",
    "Il", "Lo", "Gli", "I",
    "Der", "Die", "Das", "Ein", "Eine",
    "De", "Het", "Een",
    "O", "Os", "As", "Um", "Uma",
    "Den", "Det", "En", "Ett",
))

_YEAR = re.compile(r"\s*\((\d{4})(?:\s*[-–—]\s*(?:\d{4})?)?\)$")
_AKA_PREFIX = re.compile(r"^a\.?k\.?a\b\.?:?\s+", re.IGNORECASE)
_INVERTED = re.compile(r"^(?P<body>.*\S),\s*(?P<article>[^\s,]+)$")
# A trailing "(...)" that is part of the title rather than an alternative title:
# no letters ("(1987-1997)", "(06)") or a part/volume qualifier ("(Part 2)").
_TITLE_PART = re.compile(r"^(?:[^\w]|\d|_)*$|^(?:part|parts|vol\.?|volume|chapter|episode)\s+\S",
                         re.IGNORECASE)


@dataclass(frozen=True)
class CleanTitle:
    title: str
    year: int | None
    aka: str  # alternative titles joined by AKA_SEPARATOR; "" if none

    @property
    def akas(self) -> list[str]:
        return self.aka.split(AKA_SEPARATOR) if self.aka else []


def clean_title(raw: str) -> CleanTitle:
    """Split a raw title into title, year and alternative titles; restore inverted articles."""
    text = " ".join(unicodedata.normalize("NFC", raw or "").split())
    # A stray closing parenthesis after the year ("... (1983))").
    while text.endswith("))") and text.count(")") > text.count("("):
        text = text[:-1].rstrip()

    text, year = _split_year(text)
    akas: list[str] = []
    while (split := _split_trailing_group(text)) is not None:
        text, inner = split
        akas.insert(0, inner)
    # The year before the alternative titles ("X (1957) (Other)") or repeated ("X (2017) (2017)").
    head, year_again = _split_year(text)
    if year_again is not None and year in (None, year_again):
        text, year = head, year_again

    akas = [restore_article(_AKA_PREFIX.sub("", a).strip()) for a in akas]
    akas = [a for a in akas if a]
    return CleanTitle(restore_article(text.strip()), year, AKA_SEPARATOR.join(akas))


def restore_article(text: str) -> str:
    """`Brave, The` -> `The Brave`; `Uomo delle stelle, L'` -> `L'Uomo delle stelle`."""
    match = _INVERTED.match(text)
    if not match or match.group("article").casefold() not in ARTICLES:
        return text
    body, article = match.group("body"), match.group("article")
    # "Die, Mommie, Die": a repeated word, not an inverted article.
    if body.split(maxsplit=1)[0].rstrip(",") == article:
        return text
    article = article[0].upper() + article[1:]
    joiner = "" if article.endswith(("'", "’")) else " "
    return f"{article}{joiner}{body}"


def normalise_title(title: str) -> str:
    """Key for "same title": casefolded, punctuation and extra spaces removed (no year)."""
    text = unicodedata.normalize("NFKC", title).casefold()
    return " ".join(re.sub(r"[^\w]+", " ", text).split())


def _split_year(text: str) -> tuple[str, int | None]:
    match = _YEAR.search(text)
    if not match or match.start() == 0:
        return text, None
    return text[: match.start()], int(match.group(1))


def _split_trailing_group(text: str) -> tuple[str, str] | None:
    """`Title (Other (x))` -> ("Title", "Other (x)"); None if no separate trailing group."""
    if not text.endswith(")"):
        return None
    depth = 0
    for i in range(len(text) - 1, -1, -1):
        if text[i] == ")":
            depth += 1
        elif text[i] == "(":
            depth -= 1
            if depth == 0:
                break
    else:
        return None
    head, inner = text[:i], text[i + 1:-1].strip()
    # "Assassin(s)" (no space before the paren) and "(Untitled)" (nothing before) are titles.
    if not head.strip() or not head[-1].isspace() or not inner or _TITLE_PART.match(inner):
        return None
    return head.rstrip(), inner

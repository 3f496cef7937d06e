"""A tiny made-up dataset in the MovieLens layout, for tests (no /work/shared needed).

    root = make_tiny_movielens(tmp_path)
    -> root/movielens/movies.csv, root/movielens/links.csv, root/posters/tt<7 digits>.jpg

Contents: `n_with_poster` movies with a good poster, `n_without_poster` title-only movies,
plus one extra row for each case in TINY_CASES (bad posters, an empty title, an unknown
genre, a duplicated imdbId, two byte-identical posters, a title-only remake sharing a
poster movie's title). Poster colour and shape follow the first genre, so a model can learn.
"""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path

from PIL import Image, ImageDraw

# Genre -> (background colour, shape drawn on it).
GENRE_STYLE = {
    "Action": ((200, 30, 30), "triangle"),
    "Comedy": ((240, 220, 40), "circle"),
    "Drama": ((40, 60, 180), "rectangle"),
    "Horror": ((20, 20, 20), "triangle"),
    "Romance": ((240, 120, 170), "circle"),
    "Sci-Fi": ((30, 200, 210), "rectangle"),
    "Animation": ((60, 190, 60), "circle"),
    "Documentary": ((140, 140, 140), "rectangle"),
}
GENRES = list(GENRE_STYLE)

# Case -> the id (tt...) of the movie that carries it.
TINY_CASES = {
    "zero_byte": "tt0900001",
    "truncated": "tt0900002",
    "grayscale": "tt0900003",
    "cmyk": "tt0900004",
    "palette_png": "tt0900005",
    "rgba": "tt0900006",
    "absurd_size": "tt0900007",
    "empty_title": "tt0900008",
    "unknown_genre": "tt0900009",
    "identical_poster_a": "tt0900010",
    "identical_poster_b": "tt0900011",
    "same_title_no_poster": "tt0900012",
    "duplicate_id": "tt0100001",   # a second links.csv row pointing at the first poster movie
}
UNKNOWN_GENRE = "Superhero"

_ADJECTIVES = ["Brave", "Silent", "Golden", "Broken", "Hidden", "Last", "Crimson", "Frozen", "Wild",
               "Lonely", "Electric", "Secret", "Burning", "Endless", "Midnight", "Lucky", "Savage",
               "Gentle", "Lost", "Final"]
_NOUNS = ["River", "Heart", "Empire", "Garden", "Machine", "Stranger", "Kingdom", "Summer", "Island",
          "Promise", "Detective", "Horizon", "Dragon", "Letter", "Storm", "Circus", "Planet", "Bridge",
          "Witness", "Dream"]
_FOREIGN = ["Le Jardin secret", "Rivière, La", "Der letzte Sommer", "Drago, Il", "Puente, El",
            "Uomo delle stelle, L'", "a.k.a. Night Story", "Eiland, Het"]


def make_tiny_movielens(root: Path, n_with_poster: int = 60, n_without_poster: int = 40,
                        seed: int = 0) -> Path:
    """Write the tiny dataset under `root` and return `root`."""
    rng = random.Random(seed)
    root = Path(root)
    posters = root / "posters"
    posters.mkdir(parents=True, exist_ok=True)
    (root / "movielens").mkdir(parents=True, exist_ok=True)
    names = _unique_names(rng, n_with_poster + n_without_poster + 12)
    rows: list[tuple[str, str, str]] = []  # (imdb id, raw title, genres)

    for k in range(n_with_poster + n_without_poster):
        with_poster = k < n_with_poster
        mid = f"tt{100001 + k:07d}" if with_poster else f"tt{200001 + k:07d}"
        genres = rng.sample(GENRES, rng.choice([1, 1, 2, 3]))
        tokens = list(genres)
        if rng.random() < 0.1:
            tokens.append("IMAX")
        if not with_poster and rng.random() < 0.15:
            tokens = ["(no genres listed)"]
        rows.append((mid, _raw_title(rng, names[k]), "|".join(tokens)))
        if with_poster:
            _poster(rng, genres[0]).save(posters / f"{mid}.jpg", quality=90)
    if n_with_poster > 2:  # poster movies with no genre: kept, but not genre samples
        rows[1] = (rows[1][0], rows[1][1], "(no genres listed)")

    extra = iter(names[n_with_poster + n_without_poster:])
    good = _poster(rng, "Drama")
    case = TINY_CASES
    (posters / f"{case['zero_byte']}.jpg").write_bytes(b"")
    data = _jpeg_bytes(good)
    (posters / f"{case['truncated']}.jpg").write_bytes(data[: len(data) // 2])
    good.convert("L").save(posters / f"{case['grayscale']}.jpg", quality=90)
    good.convert("CMYK").save(posters / f"{case['cmyk']}.jpg", quality=90)
    good.convert("P", palette=Image.Palette.ADAPTIVE).save(posters / f"{case['palette_png']}.jpg", format="PNG")
    rgba = good.convert("RGBA")
    rgba.putalpha(128)
    rgba.save(posters / f"{case['rgba']}.jpg", format="PNG")
    Image.new("RGB", (10, 2000), (200, 30, 30)).save(posters / f"{case['absurd_size']}.jpg", quality=90)
    _poster(rng, "Action").save(posters / f"{case['unknown_genre']}.jpg", quality=90)
    same = _jpeg_bytes(_poster(rng, "Horror"))
    (posters / f"{case['identical_poster_a']}.jpg").write_bytes(same)
    (posters / f"{case['identical_poster_b']}.jpg").write_bytes(same)

    for name in ("zero_byte", "truncated", "grayscale", "cmyk", "palette_png", "rgba", "absurd_size"):
        rows.append((case[name], f"{next(extra)} (2001)", "Drama"))
    rows.append((case["empty_title"], "", "Comedy"))
    rows.append((case["unknown_genre"], f"{next(extra)} (2002)", f"Action|{UNKNOWN_GENRE}"))
    rows.append((case["identical_poster_a"], f"{next(extra)} (2003)", "Horror"))
    rows.append((case["identical_poster_b"], f"{next(extra)} Part II (2005)", "Horror|Sci-Fi"))
    if n_with_poster:
        remake_of = _clean_name(rows[0][1])
        rows.append((case["same_title_no_poster"], f"{remake_of} (1950)", "Drama"))
        rows.append((case["duplicate_id"], f"{next(extra)} (1999)", "Comedy"))

    with open(root / "movielens" / "movies.csv", "w", newline="", encoding="utf-8") as movies, \
            open(root / "movielens" / "links.csv", "w", newline="", encoding="utf-8") as links:
        movie_writer, link_writer = csv.writer(movies), csv.writer(links)
        movie_writer.writerow(["movieId", "title", "genres"])
        link_writer.writerow(["movieId", "imdbId", "tmdbId"])
        for movie_id, (mid, title, genres) in enumerate(rows, start=1):
            movie_writer.writerow([movie_id, title, genres])
            number = mid[2:] if movie_id % 2 else str(int(mid[2:]))  # with and without leading zeros
            link_writer.writerow([movie_id, number, 10000 + movie_id])
    return root


def _unique_names(rng: random.Random, n: int) -> list[str]:
    combos = [f"{a} {b}" for a in _ADJECTIVES for b in _NOUNS]
    rng.shuffle(combos)
    return [combos[k % len(combos)] + (f" {k // len(combos) + 1}" if k >= len(combos) else "")
            for k in range(n)]


def _raw_title(rng: random.Random, name: str) -> str:
    year = rng.randint(1930, 2020)
    style = rng.random()
    if style < 0.25:
        return f"{name}, The ({year})"       # inverted article
    if style < 0.4:
        return f"{name} ({rng.choice(_FOREIGN)}) ({year})"
    if style < 0.45:
        return f"{name} ({year}) "          # trailing space, as in MovieLens
    return f"{name} ({year})"


def _clean_name(raw: str) -> str:
    """The raw title without year (still inverted): a same-title remake of it."""
    return raw.strip().rsplit(" (", 1)[0]


def _poster(rng: random.Random, genre: str) -> Image.Image:
    colour, shape = GENRE_STYLE[genre]
    width, height = rng.randint(60, 64), rng.randint(90, 96)
    jitter = tuple(max(0, min(255, c + rng.randint(-20, 20))) for c in colour)
    img = Image.new("RGB", (width, height), jitter)
    draw = ImageDraw.Draw(img)
    x, y, s = rng.randint(5, 25), rng.randint(10, 50), rng.randint(15, 30)
    fill = (255 - jitter[0], 255 - jitter[1], 255 - jitter[2])
    if shape == "circle":
        draw.ellipse([x, y, x + s, y + s], fill=fill)
    elif shape == "triangle":
        draw.polygon([(x, y + s), (x + s, y + s), (x + s // 2, y)], fill=fill)
    else:
        draw.rectangle([x, y, x + s, y + s // 2], fill=fill)
    return img


def _jpeg_bytes(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def plain_posters(folder: Path, n: int, size: tuple[int, int], rng) -> list[str]:
    """n single-colour JPEG posters of `size` (width, height) in `folder`; colours from a numpy Generator."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"{i}.jpg"
        Image.new("RGB", size, tuple(int(c) for c in rng.integers(0, 256, 3))).save(path)
        paths.append(str(path))
    return paths


def write_genre_words_cache(config: dict) -> None:
    """A poster-text cache for `config`'s OCR settings, written as the reader would, in which every poster prints
    its genres in capitals (a line each): words a model can learn from, where the real OCR of the tiny posters
    finds none."""
    from movietitles.artefacts import feature_store
    from movietitles.data.dataset import load_prepared
    from movietitles.features.extract import POSTER_TEXT, poster_rows

    rows = poster_rows(load_prepared(config["data"]["prepared_dir"]).movies)
    cache = feature_store(config).open(POSTER_TEXT, rows)
    box = [[0, 0], [50, 0], [50, 20], [0, 20]]
    lines = [[{"text": genre.upper(), "box": box, "confidence": 0.99} for genre in genres.split("|") if genre]
             for genres in rows["genres"].fillna("")]
    for index in range(cache.num_chunks):
        cache.write_chunk(index, lines[cache.chunk_rows(index)])
    assert cache.merge()

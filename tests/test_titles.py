from pathlib import Path

import pandas as pd
import pytest

from movietitles.data.titles import AKA_SEPARATOR, CleanTitle, clean_title, normalise_title, restore_article
from needs import need_path

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MOVIES_CSV = SHARED / "datasets" / "movie-posters" / "movielens" / "movies.csv"

# Raw titles copied literally from the real MovieLens movies.csv.
REAL_EXAMPLES = [
    ("Toy Story (1995)", "Toy Story", 1995, ""),
    ("Brave, The (1997)", "The Brave", 1997, ""),
    ("Misérables, Les (1995)", "Les Misérables", 1995, ""),
    ("Star Maker, The (Uomo delle stelle, L') (1995)", "The Star Maker", 1995, "L'Uomo delle stelle"),
    ("Godzilla vs. Hedorah (Gojira tai Hedorâ) (Godzilla vs. The Smog Monster) (1971) ",
     "Godzilla vs. Hedorah", 1971, "Gojira tai Hedorâ | Godzilla vs. The Smog Monster"),
    ("City of Lost Children, The (Cité des enfants perdus, La) (1995)",
     "The City of Lost Children", 1995, "La Cité des enfants perdus"),
    ("Twelve Monkeys (a.k.a. 12 Monkeys) (1995)", "Twelve Monkeys", 1995, "12 Monkeys"),
    ("Léon: The Professional (a.k.a. The Professional) (Léon) (1994)",
     "Léon: The Professional", 1994, "The Professional | Léon"),
    ("To Have, or Not (En avoir (ou pas)) (1995)", "To Have, or Not", 1995, "En avoir (ou pas)"),
    ("Babe Ruth Story, The (1948) ", "The Babe Ruth Story", 1948, ""),
    ("(500) Days of Summer (2009)", "(500) Days of Summer", 2009, ""),
    ("Assassin(s) (1997)", "Assassin(s)", 1997, ""),
    ("Death Note: Desu nôto (2006–2007)", "Death Note: Desu nôto", 2006, ""),
    ("Die, Mommie, Die (2003)", "Die, Mommie, Die", 2003, ""),
    ("Associate, The (Associé, L') (1979)", "The Associate", 1979, "L'Associé"),
    ("Vitelloni, I (a.k.a. The Young and the Passionate) (1953)", "I Vitelloni", 1953,
     "The Young and the Passionate"),
    ("Seventh Seal, The (Sjunde inseglet, Det) (1957)", "The Seventh Seal", 1957, "Det Sjunde inseglet"),
    ("Boot, Das (Boat, The) (1981)", "Das Boot", 1981, "The Boat"),
    ("Clink of Ice, The (a.k.a.: Sound of Ice Cubes, The) (Le bruit des glaçons) (2010)",
     "The Clink of Ice", 2010, "The Sound of Ice Cubes | Le bruit des glaçons"),
    ("Mona and the Time of Burning Love (Mona ja palavan rakkauden aika) (1983))",
     "Mona and the Time of Burning Love", 1983, "Mona ja palavan rakkauden aika"),
    ("All the Streets Are Silent: The Convergence of Hip Hop and Skateboarding (1987-1997) (2021)",
     "All the Streets Are Silent: The Convergence of Hip Hop and Skateboarding (1987-1997)", 2021, ""),
    ("Babies (Bébé(s)) (2010)", "Babies", 2010, "Bébé(s)"),
    ("Millions Game, The (Das Millionenspiel)", "The Millions Game", None, "Das Millionenspiel"),
    ("European Vacation (aka National Lampoon's European Vacation) (1985)", "European Vacation", 1985,
     "National Lampoon's European Vacation"),
    ("Ah Boys To Men (Part 1) (2012)", "Ah Boys To Men (Part 1)", 2012, ""),
    ("Three Marias, The (Três Marias, As) (2002)", "The Three Marias", 2002, "As Três Marias"),
    ("Homem Que Desafiou o Diabo, O (2007)", "O Homem Que Desafiou o Diabo", 2007, ""),
    ("Remélem legközelebb sikerül meghalnod :) (2018)", "Remélem legközelebb sikerül meghalnod :)", 2018, ""),
    ("The Naked Truth (1957) (Your Past Is Showing)", "The Naked Truth", 1957, "Your Past Is Showing"),
    ("O Brother, Where Art Thou? (2000)", "O Brother, Where Art Thou?", 2000, ""),
    ("Good, the Bad and the Ugly, The (Buono, il brutto, il cattivo, Il) (1966)",
     "The Good, the Bad and the Ugly", 1966, "Il Buono, il brutto, il cattivo"),
]


@pytest.mark.parametrize("raw, title, year, aka", REAL_EXAMPLES)
def test_real_examples(raw, title, year, aka):
    assert clean_title(raw) == CleanTitle(title, year, aka)


def test_akas_list_and_separator():
    clean = clean_title("Godzilla vs. Hedorah (Gojira tai Hedorâ) (Godzilla vs. The Smog Monster) (1971)")
    assert clean.akas == ["Gojira tai Hedorâ", "Godzilla vs. The Smog Monster"]
    assert clean.aka == AKA_SEPARATOR.join(clean.akas)
    assert clean_title("Toy Story (1995)").akas == []


def test_restore_article_languages():
    assert restore_article("Uomo delle stelle, L'") == "L'Uomo delle stelle"
    assert restore_article("Haine, La") == "La Haine"
    assert restore_article("Lift, De") == "De Lift"
    assert restore_article("Yes, Madam") == "Yes, Madam"  # not an article
    assert restore_article("Mad Adventures of Rabbi Jacob, the") == "The Mad Adventures of Rabbi Jacob"


def test_odd_inputs_do_not_crash():
    assert clean_title("") == CleanTitle("", None, "")
    assert clean_title("   ") == CleanTitle("", None, "")
    assert clean_title("(Untitled) (2009)") == CleanTitle("(Untitled)", 2009, "")
    assert clean_title("(2019)").title == "(2019)"  # a title that looks like a year stays a title
    assert clean_title("X (2017) (2017)") == CleanTitle("X", 2017, "")


def test_normalise_title():
    assert normalise_title("The Brave") == normalise_title("the  brave!")
    assert normalise_title("Les Misérables") != normalise_title("Les Miserables 2")


def test_whole_real_file():
    need_path(MOVIES_CSV, "the real MovieLens titles")
    titles = pd.read_csv(MOVIES_CSV, dtype=str, keep_default_na=False)["title"]
    cleaned = [clean_title(t) for t in titles]
    empty = [raw for raw, c in zip(titles, cleaned) if not c.title]
    assert not empty, empty[:10]
    with_year = sum(c.year is not None for c in cleaned)
    assert with_year / len(cleaned) >= 0.99
    assert all(1870 <= c.year <= 2030 for c in cleaned if c.year is not None)
    # Inverted articles are restored everywhere but for a rare few odd titles.
    inverted = sum(c.title.endswith(", The") for c in cleaned)
    assert inverted <= 5

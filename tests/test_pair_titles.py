"""The title generator's pair scores: blank and non-UTF-8 titles have a defined answer, an error."""


def test_the_generators_pair_scores_refuse_blank_and_non_utf8_titles(tiny_config, tmp_path):
    """Refused before any model is loaded, naming the file and row."""
    import pytest

    from movietitles.evaluation.generator_report import score_pairs

    pairs = tmp_path / "pairs.csv"
    pairs.write_text("poster,title\na.jpg,The Silent Garden\nb.jpg,   \n", encoding="utf-8")
    with pytest.raises(ValueError, match="pairs.csv: row 3 has an empty or whitespace-only title"):
        score_pairs(tiny_config, str(pairs))
    pairs.write_bytes(b"poster,title\na.jpg,Caf\xe9\n")
    with pytest.raises(ValueError, match="pairs.csv: not valid UTF-8"):
        score_pairs(tiny_config, str(pairs))

"""BPEmb loads offline from the shared cache, and a missing file is named instead of downloaded."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from movietitles.encoders.bpemb import load_bpemb
from needs import need_path

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
BPEMB_DIR = SHARED / "bpemb"
EN = {"lang": "en", "vs": 1000, "dim": 25, "cache_dir": str(BPEMB_DIR)}


@pytest.fixture
def shared_bpemb():
    need_path(BPEMB_DIR / "en", "BPEmb (en)")


def test_loads_english_offline_and_encodes_a_title(shared_bpemb):
    bpemb = load_bpemb(EN)
    assert (bpemb.vocab_size, bpemb.dim) == (1000, 25)
    pieces = bpemb.encode("The Lord of the Rings")
    ids = bpemb.encode_ids("The Lord of the Rings")
    assert pieces[0] == "▁the" and "".join(pieces).replace("▁", " ").strip() == "the lord of the rings"
    assert len(ids) == len(pieces) and all(0 <= i < 1000 for i in ids)
    vectors = bpemb.embed("The Lord of the Rings")
    assert vectors.shape == (len(ids), 25)
    np.testing.assert_array_equal(vectors, bpemb.vectors[ids])


def test_missing_embedding_file_is_named(shared_bpemb, tmp_path):
    (tmp_path / "en").mkdir()
    shutil.copy(BPEMB_DIR / "en" / "en.wiki.bpe.vs1000.model", tmp_path / "en")
    with pytest.raises(FileNotFoundError, match=r"en\.wiki\.bpe\.vs1000\.d25\.w2v\.bin"):
        load_bpemb({**EN, "cache_dir": str(tmp_path)})


def test_missing_model_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nl\.wiki\.bpe\.vs5000\.model"):
        load_bpemb({"lang": "nl", "vs": 5000, "dim": 50, "cache_dir": str(tmp_path)})

"""Titles <-> BPEmb subword ids, plus the three special tokens the decoder needs.

Ids 0..vs-1 are BPEmb's own subwords (its SentencePiece ids, so row i of BPEmb's vectors is the
embedding of id i). The specials come after them: PAD = vs, <s> = vs+1, </s> = vs+2, and the
vocabulary has vs+3 entries. BPEmb's own <unk>/<s>/</s> pieces (ids 0-2) are never produced for
a title except <unk> (for characters BPEmb does not know), which decoding drops.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from movietitles.encoders.bpemb import load_bpemb

EMBEDDING_INITS = ("bpemb", "random")


class TitleTokenizer:
    """`encode`/`decode` titles and teacher-forcing pairs over the BPEmb of `config["encoders"]["bpemb"]`."""

    def __init__(self, bpemb_cfg: dict, max_len: int = 24):
        if int(max_len) < 2:
            raise ValueError(f"generator.max_len must be at least 2 (one subword and </s>), got {max_len!r}")
        self.bpemb = load_bpemb(bpemb_cfg)
        self.max_len = int(max_len)
        vs = int(self.bpemb.vocab_size)
        self.subword_vocab_size = vs
        self.pad_id, self.bos_id, self.eos_id = vs, vs + 1, vs + 2
        self.vocab_size = vs + 3
        spm = self.bpemb.spm
        # SentencePiece's control/unknown pieces: never part of a decoded title.
        self.unk_id = spm.unk_id()
        self._hidden = {i for i in range(vs) if spm.is_control(i) or spm.is_unknown(i)}

    @classmethod
    def from_config(cls, config: dict) -> "TitleTokenizer":
        return cls(config["encoders"]["bpemb"], config["generator"]["max_len"])

    @property
    def never_generated(self) -> list[int]:
        """Ids a sampler must never produce: PAD, <s>, and SentencePiece's unknown/control pieces."""
        return sorted(self._hidden | {self.pad_id, self.bos_id})

    @property
    def dim(self) -> int:
        return int(self.bpemb.dim)

    def encode(self, title: str) -> list[int]:
        """Subword ids of a title, BPEmb-preprocessed (lowercased, digits -> 0); no specials, no cap."""
        return list(self.bpemb.encode_ids(title))

    def encode_batch(self, titles: Iterable[str]) -> list[list[int]]:
        return [list(ids) for ids in self.bpemb.encode_ids(list(titles))]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ids up to the first </s>; PAD, <s> and unknown pieces are dropped."""
        kept = []
        for i in map(int, ids):
            if i == self.eos_id:
                break
            if i < self.subword_vocab_size and i not in self._hidden:
                kept.append(i)
        return self.bpemb.spm.decode_ids(kept).strip() if kept else ""

    def normal_form(self, text: str) -> str:
        """`text` as the decoder can write it: BPEmb's preprocessing (lowercase, digits -> 0), characters it does
        not know dropped, blanks collapsed. Generated titles are in this form; compare others in it too."""
        return " ".join(self.decode(self.encode(text)).split())

    def teacher_forcing(self, ids: Sequence[int]) -> tuple[list[int], list[int]]:
        """(input, target) of one title: `<s> t1 … tn` and `t1 … tn </s>`, at most max_len long
        (longer titles lose their last subwords but keep the </s>)."""
        ids = list(ids)[: self.max_len - 1]
        return [self.bos_id] + ids, ids + [self.eos_id]

    def pad(self, sequences: Sequence[Sequence[int]], length: int | None = None) -> np.ndarray:
        """[N, length] int32, right-padded with PAD (length: the longest sequence by default)."""
        length = length or max((len(s) for s in sequences), default=0)
        out = np.full((len(sequences), length), self.pad_id, np.int32)
        for row, seq in enumerate(sequences):
            out[row, : len(seq)] = seq[:length]
        return out

    def embedding_matrix(self, init: str = "bpemb", seed: int = 0) -> np.ndarray:
        """[vocab_size, dim] float32: BPEmb's vectors for the subwords ("bpemb") or random vectors of
        the same scale ("random"); PAD is zero, <s> and </s> small random vectors."""
        if init not in EMBEDDING_INITS:
            raise ValueError(f"generator.embeddings must be one of {EMBEDDING_INITS}, got {init!r}")
        rng = np.random.default_rng(seed)
        vectors = np.asarray(self.bpemb.vectors, np.float32)
        if vectors.shape != (self.subword_vocab_size, self.dim):
            raise ValueError(f"{self.bpemb.emb_file}: {vectors.shape[0]} vectors for {self.subword_vocab_size} "
                             "subwords; the BPEmb model and embedding files do not match")
        scale = float(vectors.std())
        if init == "random":
            vectors = rng.normal(0.0, scale, vectors.shape).astype(np.float32)
        specials = np.zeros((3, self.dim), np.float32)
        specials[1:] = rng.normal(0.0, 0.1 * scale, (2, self.dim))
        return np.concatenate([vectors, specials])

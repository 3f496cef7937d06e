"""BPEmb subword segmentation + embeddings, loaded offline from a local cache folder."""

from __future__ import annotations

from pathlib import Path


def bpemb_files(cfg: dict) -> tuple[Path, Path]:
    """The SentencePiece model and word2vec embedding files that `bpemb` expects under cache_dir."""
    lang, vs, dim = cfg["lang"], int(cfg["vs"]), int(cfg["dim"])
    folder = Path(cfg["cache_dir"]) / lang
    return folder / f"{lang}.wiki.bpe.vs{vs}.model", folder / f"{lang}.wiki.bpe.vs{vs}.d{dim}.w2v.bin"


def load_bpemb(cfg: dict):
    """A `bpemb.BPEmb` from config["encoders"]["bpemb"] (lang, vs, dim, cache_dir), never downloading.

    Raises FileNotFoundError naming the missing file (BPEmb itself would try the network).
    """
    from bpemb import BPEmb

    model_file, emb_file = bpemb_files(cfg)
    for path in (model_file, emb_file):
        if not path.is_file():
            raise FileNotFoundError(
                f"BPEmb file {path} is missing (encoders.bpemb: lang={cfg['lang']}, vs={cfg['vs']}, "
                f"dim={cfg['dim']}); put the BPEmb files for these settings under {cfg['cache_dir']}")
    # Explicit files and no vocabulary-size fallback: exactly the configured model, and no download.
    return BPEmb(lang=cfg["lang"], vs=int(cfg["vs"]), dim=int(cfg["dim"]), cache_dir=Path(cfg["cache_dir"]),
                 vs_fallback=False, model_file=model_file, emb_file=emb_file)

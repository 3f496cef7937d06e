"""Title generation from posters: BPEmb subword tokenizer, tf.data pairs, GRU decoder (model.py),
sampling (sampling.py) and trained runs on disk (runs.py).

Training lives in `movietitles.training.generator`, the command line in `movietitles.generate`.
"""

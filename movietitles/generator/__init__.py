"""Title generation from posters: BPEmb subword tokenizer, tf.data pairs, GRU decoder, sampling.

Training lives in `movietitles.training.generator`, the command line in `movietitles.generate`.
"""

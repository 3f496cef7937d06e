"""Logging for the command-line tools: our INFO lines, without TensorFlow's and absl's chatter."""

import logging


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("absl", "tensorflow", "h5py", "gensim"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

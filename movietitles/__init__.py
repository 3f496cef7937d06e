"""movietitles: genre prediction and title generation from movie titles and posters."""

import os

# TensorFlow's C++ start-up chatter (CUDA probes, oneDNN notices) hides our own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

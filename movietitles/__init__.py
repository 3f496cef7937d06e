"""movietitles: genre prediction and title generation from movie titles and posters."""

import os

from movietitles import quiet_tensorflow

# TensorFlow's C++ start-up chatter (CUDA probes, oneDNN notices) hides our own output: quiet by default,
# all of it with --verbose or a TF_CPP_MIN_LOG_LEVEL of the user's.
quiet_tensorflow.install()

# oneDNN's CPU kernels, on every x86 CPU. TensorFlow turns them on by default only where it finds
# AVX-512 VNNI or newer; on AVX2-only CPUs it leaves them off and EfficientNet's depthwise
# convolutions run ~2.5x slower. TensorFlow reads this once, when it is imported, so every entry
# point (which imports this package first) sets it here. A user's own setting wins:
# TF_ENABLE_ONEDNN_OPTS=0 is the plain (Eigen) path, which matches this one within 1e-4.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"

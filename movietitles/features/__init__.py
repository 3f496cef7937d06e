"""Cached title and poster embeddings and the tf.data pipeline that serves them."""

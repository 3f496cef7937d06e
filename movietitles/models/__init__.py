"""Keras model architectures."""

"""Pretrained text and image encoders (Keras 3 ports, loaded without torch)."""

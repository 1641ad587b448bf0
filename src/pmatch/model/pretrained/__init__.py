"""Pretrained encoders converted for offline use as frozen Keras feature extractors."""

"""Keras towers, the matching model, training and loading for inference."""

"""Image and text preprocessing: what the encoders read."""

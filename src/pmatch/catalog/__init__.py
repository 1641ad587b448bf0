"""The catalogue format, the synthetic sample generator and pair building."""

"""The synthetic sample catalogue users train on by default, and its monitoring batches."""

from pmatch.sample.render import IMAGE_SIZE, draw_photo
from pmatch.sample.words import COLOURS, NEW_COLOURS
from pmatch.sample.writer import write_sample

__all__ = ["COLOURS", "IMAGE_SIZE", "NEW_COLOURS", "draw_photo", "write_sample"]

"""Loads product photos into fixed-size uint8 arrays for the image encoder."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# Photos decoded and encoded at once are capped by pixels: an eager Keras call keeps every
# layer's output until it returns, about 80 MB a photo for EfficientNet-Lite0 at 224 px.
BATCH_PIXELS = 32 * 224 * 224


def photos_per_batch(size: int, most: int = 256) -> int:
    """How many size x size photos to hold and encode at once (at most `most`), so memory
    follows this batch, not the number of photos."""
    return max(1, min(most, BATCH_PIXELS // (size * size)))


def load_image(path: str | Path, size: int) -> np.ndarray:
    """One photo as a (size, size, 3) uint8 array, letterboxed on white to keep its shape.

    Transparent pixels (cut-out PNGs, palette images with a transparent colour) are laid on
    white as well: converted directly, they would take whatever colour they hide, often
    black, and the product would seem to stand on a black background.
    """
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)
        if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
            image = image.convert("RGBA")
            image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image)
        image = image.convert("RGB")
        image = ImageOps.pad(image, (size, size), method=Image.Resampling.BILINEAR, color="white")
        return np.asarray(image, dtype=np.uint8)


def load_images(paths, size: int, progress=None, workers: int = 4) -> np.ndarray:
    """Photos as an (n, size, size, 3) uint8 array, in the order of paths.

    progress: optional callable(done, total), called every few hundred images.
    """
    paths = list(paths)
    output = np.zeros((len(paths), size, size, 3), dtype=np.uint8)

    def load(index: int) -> int:
        output[index] = load_image(paths[index], size)
        return index

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for done, _ in enumerate(pool.map(load, range(len(paths))), start=1):
            if progress and (done % 250 == 0 or done == len(paths)):
                progress(done, len(paths))
    return output

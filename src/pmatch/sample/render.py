"""Draws the sample's product photos: a category's silhouette in a colour, pattern and material."""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import cache, lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from pmatch.sample.categories import LAYERS, Category, Shape, load_categories
from pmatch.sample.words import MATERIALS, PATTERNS

IMAGE_SIZE = 96
# Shapes are drawn at twice the output size and scaled down, which anti-aliases every edge.
DRAW_SIZE = 2 * IMAGE_SIZE

# Light and dark backdrops; a photo only uses those far from its object's colour.
BACKGROUNDS = (
    (236, 236, 232),
    (214, 218, 224),
    (226, 232, 220),
    (240, 228, 214),
    (205, 205, 205),
    (180, 190, 200),
    (60, 64, 72),
    (44, 52, 66),
)
MIN_BACKGROUND_DISTANCE = 120


def draw_photo(
    category_key: str,
    colour: tuple[int, int, int],
    pattern: str,
    material: str,
    rng: np.random.Generator,
    dark: bool = False,
    blur: bool = False,
    categories: Mapping[str, Category] | None = None,
) -> Image.Image:
    """A 96x96 RGB product photo: the category's silhouette in colour, pattern and material.

    rng: varies position, scale, rotation, backdrop and lighting; the same state gives the
        same photo.
    dark, blur: the shifted batch's camera problems (brightness x0.35-0.55, Gaussian blur).
    categories: where category_key is looked up; None means categories.yaml.
    """
    if categories is None:
        categories = load_categories()
    if category_key not in categories:
        raise ValueError(
            f"draw_photo: unknown category {category_key!r}; use one of {tuple(categories)}"
        )
    if pattern not in PATTERNS or material not in MATERIALS:
        raise ValueError(
            f"draw_photo: pattern {pattern!r} / material {material!r}; "
            f"use one of {PATTERNS} / {MATERIALS}"
        )
    category = categories[category_key]
    size = DRAW_SIZE
    colour_array = np.array(colour, dtype=np.float32)
    body, shade, neutral, rim = _category_masks(category)

    texture = _pattern_texture(colour_array, pattern, rng, size)
    texture = _apply_material(texture, material, rng, size)
    texture = _apply_lighting(texture, rng, size)

    pixels = np.empty((size, size, 3), dtype=np.float32)
    pixels[:] = colour_array * 0.35
    pixels[body > 0] = texture[body > 0]
    pixels[neutral > 0] = category.neutral
    pixels[shade > 0] = colour_array * 0.55
    layer = np.dstack([np.clip(pixels, 0, 255).astype(np.uint8), rim])
    sprite = _place(Image.fromarray(layer, "RGBA"), rng, size)

    canvas = _background(colour_array, rng, size)
    shadow_alpha = sprite.getchannel("A").filter(ImageFilter.GaussianBlur(6))
    shadow_alpha = shadow_alpha.point(lambda value: int(value * 0.35))
    shadow = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    shadow.putalpha(shadow_alpha)
    canvas.alpha_composite(shadow, (int(rng.integers(2, 7)), int(rng.integers(4, 10))))
    canvas.alpha_composite(sprite)
    photo = canvas.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)

    values = np.asarray(photo, dtype=np.float32)
    brightness = rng.uniform(0.85, 1.15)
    if dark:
        brightness *= rng.uniform(0.35, 0.55)
    values = values * brightness + rng.normal(0.0, 2.5, values.shape)
    photo = Image.fromarray(np.clip(values, 0, 255).astype(np.uint8), "RGB")
    if blur:
        photo = photo.filter(ImageFilter.GaussianBlur(rng.uniform(2.0, 3.0)))
    return photo


@cache
def _category_masks(category: Category) -> tuple[np.ndarray, ...]:
    """The body, shade and neutral masks of a category, and the rim around all three.

    The silhouette of a category never changes, so it is drawn once per process.
    """
    body, shade, neutral = _draw_layers(category.shapes, DRAW_SIZE)
    silhouette = np.maximum(np.maximum(body, shade), neutral)
    # A dark rim keeps white objects readable on light backdrops and black ones on dark.
    rim = np.asarray(Image.fromarray(silhouette).filter(ImageFilter.MaxFilter(5)))
    return body, shade, neutral, rim


def _draw_layers(shapes: tuple[Shape, ...], size: int) -> tuple[np.ndarray, ...]:
    """Rasterises the shapes into body, shade and neutral masks (0 or 255) at size x size."""
    masks = {layer: Image.new("L", (size, size), 0) for layer in LAYERS}
    for shape in shapes:
        draw = ImageDraw.Draw(masks[shape.layer])
        points = [(x * size, y * size) for x, y in shape.points]
        box = [value * size for value in shape.box]
        width = max(1, round(shape.width * size))
        if shape.kind == "polygon":
            draw.polygon(points, fill=255)
        elif shape.kind == "line":
            draw.line(points, fill=255, width=width, joint="curve")
        elif shape.kind == "rectangle":
            draw.rectangle(box, fill=255)
        elif shape.kind == "ellipse":
            draw.ellipse(box, fill=255)
        elif shape.kind == "rounded":
            draw.rounded_rectangle(box, radius=shape.radius * size, fill=255)
        elif shape.kind == "chord":
            draw.chord(box, shape.degrees[0], shape.degrees[1], fill=255)
        elif shape.kind == "arc":
            draw.arc(box, 180, 360, fill=255, width=width)
        elif shape.kind == "ring":
            draw.ellipse(box, outline=255, width=width)
        else:
            raise ValueError(f"_draw_layers: unknown shape kind {shape.kind!r}")
    return tuple(np.asarray(masks[layer]) for layer in LAYERS)


@lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    rows, columns = np.mgrid[0:size, 0:size].astype(np.float32)
    return rows, columns


def _pattern_texture(
    colour: np.ndarray, pattern: str, rng: np.random.Generator, size: int
) -> np.ndarray:
    """The colour with the pattern in a contrasting tone; the colour keeps most of the area.

    Periods are chosen so stripes, dots and checks stay a few pixels wide at 64x64.
    """
    rows, columns = _grid(size)
    luminance = float(colour @ np.array([0.299, 0.587, 0.114], dtype=np.float32))
    contrast = colour * 0.45 if luminance > 150 else colour + (255 - colour) * 0.65
    if pattern == "solid":
        marks = np.zeros((size, size), dtype=bool)
    elif pattern == "striped":
        angle = rng.uniform(0, math.pi)
        period = rng.uniform(24, 32)
        along = columns * math.cos(angle) + rows * math.sin(angle) + rng.uniform(0, period)
        marks = (along % period) < period * 0.4
    elif pattern == "dotted":
        spacing = rng.uniform(30, 36)
        radius = spacing * 0.27
        offset_x, offset_y = rng.uniform(0, spacing, 2)
        delta_x = (columns + offset_x) % spacing - spacing / 2
        delta_y = (rows + offset_y) % spacing - spacing / 2
        marks = delta_x**2 + delta_y**2 < radius**2
    else:
        square = rng.uniform(20, 26)
        offset_x, offset_y = rng.uniform(0, square, 2)
        marks = ((columns + offset_x) // square + (rows + offset_y) // square) % 2 == 1
    return np.where(marks[..., None], contrast, colour).astype(np.float32)


def _apply_material(
    texture: np.ndarray, material: str, rng: np.random.Generator, size: int
) -> np.ndarray:
    """Glossy adds a white highlight, knit adds grain and ribbing; matte leaves it flat."""
    rows, columns = _grid(size)
    if material == "glossy":
        centre_x, centre_y = rng.uniform(0.32, 0.48, 2) * size
        spread = 0.11 * size
        glow = np.exp(-((columns - centre_x) ** 2 + (rows - centre_y) ** 2) / (2 * spread**2))
        return texture + (255 - texture) * (0.8 * glow)[..., None]
    if material == "knit":
        grain = rng.normal(0.0, 16.0, (size, size)).astype(np.float32)
        ribbing = 12.0 * np.sin(rows * (2 * math.pi / 7.0))
        return texture + (grain + ribbing)[..., None]
    return texture


def _apply_lighting(texture: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """Light falls from a random side: up to 12% brighter on one side, darker on the other."""
    rows, columns = _grid(size)
    angle = rng.uniform(0, 2 * math.pi)
    along = (columns * math.cos(angle) + rows * math.sin(angle)) / size
    along = along - along.mean()
    return texture * (1.0 + 0.24 * along)[..., None]


def _place(sprite: Image.Image, rng: np.random.Generator, size: int) -> Image.Image:
    """Scales, rotates and shifts the object in one resampling step."""
    scale = rng.uniform(0.62, 0.86)
    angle = math.radians(rng.uniform(-20, 20))
    shift_x, shift_y = rng.uniform(-0.07, 0.07, 2) * size
    centre = size / 2
    # Image.transform maps each output pixel back to the input: undo shift, scale, rotation.
    cosine, sine = math.cos(angle) / scale, math.sin(angle) / scale
    target_x, target_y = centre + shift_x, centre + shift_y
    matrix = (
        cosine,
        sine,
        centre - cosine * target_x - sine * target_y,
        -sine,
        cosine,
        centre + sine * target_x - cosine * target_y,
    )
    return sprite.transform(
        (size, size), Image.Transform.AFFINE, matrix, resample=Image.Resampling.BICUBIC
    )


def _background(colour: np.ndarray, rng: np.random.Generator, size: int) -> Image.Image:
    """A backdrop far from the object's colour: flat or a soft gradient between two tones."""
    palette = np.array(BACKGROUNDS, dtype=np.float32)
    usable = palette[np.linalg.norm(palette - colour, axis=1) >= MIN_BACKGROUND_DISTANCE]
    start = usable[int(rng.integers(len(usable)))]
    end = np.clip(start + rng.uniform(-28, 28, 3), 0, 255)
    rows, columns = _grid(size)
    angle = rng.uniform(0, 2 * math.pi)
    along = (columns * math.cos(angle) + rows * math.sin(angle)) / size
    along = (along - along.min()) / (along.max() - along.min())
    if rng.random() < 0.3:
        along = np.zeros_like(along)
    pixels = start + (end - start) * along[..., None]
    alpha = np.full((size, size, 1), 255, dtype=np.uint8)
    return Image.fromarray(np.dstack([pixels.astype(np.uint8), alpha]), "RGBA")

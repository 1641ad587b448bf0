"""The sample catalogue's kinds of product, read from categories.yaml into typed records."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from types import MappingProxyType

import yaml

CATEGORIES_FILE = "categories.yaml"
# Kinds of product the sample catalogue never has: deliveries with new categories draw them.
NEW_CATEGORIES_FILE = "new_categories.yaml"
LAYERS = ("body", "shade", "neutral")
# What each kind of shape needs besides its layer and kind.
SHAPE_FIELDS = {
    "polygon": ("points",),
    "line": ("points", "width"),
    "rectangle": ("box",),
    "ellipse": ("box",),
    "rounded": ("box", "radius"),
    "chord": ("box", "degrees"),
    "arc": ("box", "width"),
    "ring": ("box", "width"),
}


@dataclass(frozen=True)
class Shape:
    """One drawing primitive; coordinates and widths are fractions of the picture side.

    layer: body (takes the colour, pattern and material), shade (a darker tone of the
        colour) or neutral (the category's neutral colour).
    kind: one of SHAPE_FIELDS; it says which of the other fields are set.
    points: the (x, y) corners of a polygon or line.
    box: (left, top, right, bottom) of the other kinds.
    width: stroke width of a line, arc or ring.
    radius: corner radius of a rounded rectangle.
    degrees: start and end angle of a chord.
    """

    layer: str
    kind: str
    points: tuple[tuple[float, float], ...] = ()
    box: tuple[float, ...] = ()
    width: float = 0.0
    radius: float = 0.0
    degrees: tuple[float, ...] = ()


@dataclass(frozen=True)
class Category:
    """One kind of product: how it is named, sized, described and drawn.

    path: the category column, a '|' path whose first element is the category itself.
    nouns: synonyms for the product in names and descriptions.
    sizes, features: what titles and descriptions say about the product.
    soft: fabric goods (material words like cotton/knit) rather than hard goods (matte/glossy).
    neutral: RGB colour of parts that do not take the product colour (soles, caps, dials).
    shapes: drawn in order into the body, shade and neutral layers.
    """

    path: str
    nouns: tuple[str, ...]
    sizes: tuple[str, ...]
    features: tuple[str, ...]
    soft: bool
    neutral: tuple[int, int, int]
    shapes: tuple[Shape, ...]


@lru_cache(maxsize=2)
def load_categories(file_name: str = CATEGORIES_FILE) -> MappingProxyType[str, Category]:
    """The categories of a file in this folder (categories.yaml, or NEW_CATEGORIES_FILE) by
    key, in file order; each file is read once."""
    text = resources.files(__package__).joinpath(file_name).read_text(encoding="utf-8")
    return MappingProxyType(parse_categories(yaml.safe_load(text), file_name))


def parse_categories(table: object, file_name: str = CATEGORIES_FILE) -> dict[str, Category]:
    """Typed categories from the parsed YAML table; ValueError names the file and the first
    bad entry."""
    if not isinstance(table, dict) or not table:
        raise ValueError(f"{file_name}: expected a mapping of category keys to categories")
    return {
        key: _parse_category(f"{file_name}: category {key!r}", entry)
        for key, entry in table.items()
    }


def _parse_category(where: str, entry: object) -> Category:
    fields = ("path", "nouns", "sizes", "features", "soft", "neutral", "shapes")
    _check_keys(where, entry, fields)
    for name in ("nouns", "sizes", "features"):
        items = entry[name]
        strings = isinstance(items, list) and all(isinstance(item, str) for item in items)
        if not items or not strings:
            raise ValueError(f"{where}: {name} must be a non-empty list of strings")
    if not isinstance(entry["soft"], bool):
        raise ValueError(f"{where}: soft must be true or false, not {entry['soft']!r}")
    neutral = entry["neutral"]
    if (
        not isinstance(neutral, list)
        or len(neutral) != 3
        or not all(isinstance(value, int) and 0 <= value <= 255 for value in neutral)
    ):
        raise ValueError(f"{where}: neutral must be three integers 0-255, not {neutral!r}")
    return Category(
        path=str(entry["path"]),
        nouns=tuple(entry["nouns"]),
        sizes=tuple(entry["sizes"]),
        features=tuple(entry["features"]),
        soft=entry["soft"],
        neutral=tuple(neutral),
        shapes=tuple(
            _parse_shape(f"{where} shape {index}", shape)
            for index, shape in enumerate(entry["shapes"])
        ),
    )


def _parse_shape(where: str, entry: object) -> Shape:
    kind = entry.get("kind") if isinstance(entry, dict) else None
    if kind not in SHAPE_FIELDS:
        raise ValueError(f"{where}: kind {kind!r}; use one of {tuple(SHAPE_FIELDS)}")
    _check_keys(where, entry, ("layer", "kind", *SHAPE_FIELDS[kind]))
    if entry["layer"] not in LAYERS:
        raise ValueError(f"{where}: layer {entry['layer']!r}; use one of {LAYERS}")
    # Values keep the type YAML gave them (degrees stay integers), so the drawing is exactly
    # what the table says.
    values = {name: entry[name] for name in SHAPE_FIELDS[kind]}
    if "points" in values:
        values["points"] = tuple(tuple(point) for point in values["points"])
    for name in ("box", "degrees"):
        if name in values:
            values[name] = tuple(values[name])
    return Shape(layer=entry["layer"], kind=kind, **values)


def _check_keys(where: str, entry: object, expected: tuple[str, ...]) -> None:
    """Raises ValueError unless entry is a mapping with exactly the expected keys."""
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected a mapping with keys {expected}, got {entry!r}")
    problems = [f"missing {name!r}" for name in expected if name not in entry]
    problems += [f"unknown {name!r}" for name in entry if name not in expected]
    if problems:
        raise ValueError(f"{where}: {', '.join(problems)}; the keys are {expected}")

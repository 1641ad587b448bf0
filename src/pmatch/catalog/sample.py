"""Writes a deterministic synthetic product catalogue with photos, plus incoming monitoring batches."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter

from pmatch.artifacts import CATALOG_FILE, PAIRS_FILE
from pmatch.catalog.format import item_text
from pmatch.catalog.pairs import build_pairs

IMAGE_SIZE = 96
# Shapes are drawn at twice the output size and scaled down, which anti-aliases every edge.
DRAW_SIZE = 2 * IMAGE_SIZE
CATALOG_COLUMNS = [
    "product_id",
    "variant",
    "title",
    "name",
    "color",
    "category",
    "description",
    "image_path",
]
PAIR_COLUMNS = [
    "pair_id",
    "image_path",
    "text",
    "product_id",
    "expected_match",
    "pair_kind",
    "shift",
]
BATCH_NAMES = ("unshifted", "shifted")
PROGRESS_EVERY = 100
DRAW_THREADS = 4

# The colours of the catalogue. Neighbours (blue/navy/teal, red/brown, gray/beige) are still
# about 90 RGB units apart, so a photo's colour stays readable under the lighting jitter.
COLOURS = {
    "red": (200, 30, 35),
    "blue": (35, 85, 215),
    "green": (40, 150, 60),
    "yellow": (245, 210, 40),
    "orange": (245, 135, 25),
    "purple": (125, 55, 170),
    "pink": (245, 160, 200),
    "black": (25, 25, 28),
    "white": (245, 245, 242),
    "gray": (135, 135, 135),
    "brown": (120, 72, 35),
    "teal": (20, 145, 145),
    "navy": (20, 32, 95),
    "beige": (222, 200, 160),
}
# Colours held back from the catalogue: only the shifted batch uses them, so the model meets
# colours it has never seen, as it would when a shop adds a new season's range.
NEW_COLOURS = {
    "magenta": (220, 30, 200),
    "lime": (160, 230, 40),
    "coral": (250, 120, 100),
}
# How titles and descriptions sometimes spell a colour; the first word is the colour column's.
COLOUR_WORDS = {
    "gray": ("gray", "grey"),
    "navy": ("navy", "dark blue", "navy blue"),
    "purple": ("purple", "violet"),
    "beige": ("beige", "sand"),
    "pink": ("pink", "rose"),
    "magenta": ("magenta", "fuchsia"),
    "lime": ("lime", "lime green"),
}
SYNONYM_SHARE = 0.3

BRANDS = (
    "Nordhaven",
    "Kestrel",
    "Lumora",
    "Brightfield",
    "Ashgrove",
    "Corvina",
    "Talvik",
    "Fenwick",
    "Oaklume",
    "Marisol",
    "Vantera",
    "Quillon",
    "Hollin",
    "Brisa",
    "Sundvik",
)
STYLES = (
    "Classic",
    "Everyday",
    "Urban",
    "Heritage",
    "Essential",
    "Studio",
    "Coastal",
    "Metro",
    "Vintage",
    "Nordic",
    "Summit",
    "Harbor",
)

PATTERNS = ("solid", "striped", "dotted", "checked")
PATTERN_WEIGHTS = (0.4, 0.2, 0.2, 0.2)
PATTERN_WORDS = {
    "solid": ("solid", "plain", "solid-colour"),
    "striped": ("striped", "stripy", "stripe-pattern"),
    "dotted": ("polka dot", "dotted", "spotted"),
    "checked": ("checked", "check", "plaid", "checkered"),
}
MATERIALS = ("matte", "glossy", "knit")
MATERIAL_WEIGHTS = (0.5, 0.25, 0.25)
# Fabric goods and hard goods describe the same surface with different words.
SOFT_MATERIAL_WORDS = {
    "matte": ("cotton", "canvas", "twill"),
    "glossy": ("satin", "patent", "shiny"),
    "knit": ("knit", "ribbed", "textured"),
}
HARD_MATERIAL_WORDS = {
    "matte": ("matte", "matt", "stone-finish"),
    "glossy": ("glossy", "high-gloss", "lacquered"),
    "knit": ("textured", "grained", "speckled"),
}

VARIANT_SHARE = 1 / 3
TITLE_TYPO_SHARE = 0.05
SHIFT_NEW_COLOUR_SHARE = 0.5
SHIFT_WORD_TYPO_SHARE = 0.3

TITLE_TEMPLATES = (
    "{name} - {colour}",
    "{name} in {colour}",
    "{colour} {name}",
    "{name}, {colour}, {size}",
    "{name} ({colour} {pattern})",
    "{name} {pattern} {colour} - {size}",
    "{name} | {colour} | {material}",
)
DESCRIPTION_TEMPLATES = (
    "{pattern_capital} {material} {noun} from {brand}{colours}. {feature} Size: {size}.",
    "{brand} {noun}, {pattern} and {material}{colours}, size {size}. {feature}",
    "{feature} Made by {brand}: {pattern} {material} {noun}{colours}, {size}.",
)

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


@dataclass(frozen=True)
class Category:
    """One kind of product: how it is named, sized, described and drawn.

    path: the category column, a '|' path whose first element is the category itself.
    nouns: synonyms for the product in names and descriptions.
    soft: fabric goods (material words like cotton/knit) rather than hard goods (matte/glossy).
    neutral: colour of parts that do not take the product colour (soles, caps, dials).
    shapes: drawing primitives in unit coordinates, see _draw_layers.
    """

    path: str
    nouns: tuple[str, ...]
    sizes: tuple[str, ...]
    features: tuple[str, ...]
    soft: bool
    neutral: tuple[int, int, int]
    shapes: tuple[tuple, ...]


# Each shape is (layer, kind, coordinates, extra): layer "body" takes the colour, pattern and
# material; "neutral" the category's neutral colour; "shade" a darker tone of the colour.
CATEGORIES = {
    "tshirt": Category(
        path="Tops|T-shirts",
        nouns=("t-shirt", "tee", "top", "crew-neck tee"),
        sizes=("S", "M", "L", "XL"),
        features=(
            "Soft jersey for everyday wear.",
            "Relaxed fit with a crew neck.",
            "Short sleeves and a regular fit.",
        ),
        soft=True,
        neutral=(60, 60, 60),
        shapes=(
            (
                "body",
                "polygon",
                (
                    (0.37, 0.12),
                    (0.45, 0.17),
                    (0.55, 0.17),
                    (0.63, 0.12),
                    (0.86, 0.22),
                    (0.97, 0.42),
                    (0.80, 0.49),
                    (0.75, 0.42),
                    (0.75, 0.90),
                    (0.25, 0.90),
                    (0.25, 0.42),
                    (0.20, 0.49),
                    (0.03, 0.42),
                    (0.14, 0.22),
                ),
                None,
            ),
            ("shade", "line", ((0.37, 0.12), (0.45, 0.19), (0.55, 0.19), (0.63, 0.12)), 0.03),
            ("shade", "line", ((0.80, 0.49), (0.97, 0.42)), 0.025),
            ("shade", "line", ((0.03, 0.42), (0.20, 0.49)), 0.025),
        ),
    ),
    "trousers": Category(
        path="Bottoms|Trousers",
        nouns=("trousers", "pants", "chinos", "slacks"),
        sizes=("W30 L32", "W32 L32", "W34 L34", "W36 L32"),
        features=(
            "Straight leg with a mid rise.",
            "Belt loops and two side pockets.",
            "Tailored through the thigh.",
        ),
        soft=True,
        neutral=(200, 170, 70),
        shapes=(
            (
                "body",
                "polygon",
                (
                    (0.28, 0.08),
                    (0.72, 0.08),
                    (0.77, 0.93),
                    (0.55, 0.93),
                    (0.50, 0.36),
                    (0.45, 0.93),
                    (0.23, 0.93),
                ),
                None,
            ),
            ("shade", "rectangle", (0.28, 0.08, 0.72, 0.16), None),
            ("shade", "line", ((0.50, 0.16), (0.50, 0.34)), 0.015),
            ("neutral", "ellipse", (0.48, 0.10, 0.52, 0.14), None),
        ),
    ),
    "shoe": Category(
        path="Footwear|Sneakers",
        nouns=("sneaker", "trainer", "shoe", "running shoe"),
        sizes=("EU 38", "EU 40", "EU 42", "EU 44", "EU 46"),
        features=(
            "Cushioned sole for all-day comfort.",
            "Lace-up front and a padded collar.",
            "Grippy rubber outsole.",
        ),
        soft=True,
        neutral=(236, 234, 226),
        shapes=(
            (
                "body",
                "polygon",
                (
                    (0.06, 0.40),
                    (0.22, 0.34),
                    (0.34, 0.42),
                    (0.44, 0.48),
                    (0.62, 0.52),
                    (0.82, 0.57),
                    (0.94, 0.66),
                    (0.94, 0.74),
                    (0.06, 0.74),
                ),
                None,
            ),
            ("neutral", "rounded", (0.04, 0.70, 0.96, 0.82), 0.04),
            ("shade", "ellipse", (0.10, 0.35, 0.30, 0.44), None),
            ("shade", "line", ((0.40, 0.49), (0.45, 0.43)), 0.02),
            ("shade", "line", ((0.48, 0.52), (0.53, 0.46)), 0.02),
            ("shade", "line", ((0.56, 0.54), (0.61, 0.48)), 0.02),
        ),
    ),
    "bag": Category(
        path="Bags|Handbags",
        nouns=("handbag", "bag", "tote", "shoulder bag"),
        sizes=("small", "medium", "large", "12 L"),
        features=(
            "Zip closure and an inner pocket.",
            "Fits a tablet and the daily essentials.",
            "Sturdy top handle.",
        ),
        soft=True,
        neutral=(205, 175, 70),
        shapes=(
            ("body", "polygon", ((0.22, 0.40), (0.78, 0.40), (0.90, 0.88), (0.10, 0.88)), None),
            ("shade", "arc", (0.30, 0.12, 0.70, 0.68), 0.05),
            ("shade", "line", ((0.17, 0.56), (0.83, 0.56)), 0.02),
            ("neutral", "rectangle", (0.45, 0.52, 0.55, 0.62), None),
        ),
    ),
    "hat": Category(
        path="Hats|Fedoras",
        nouns=("hat", "fedora", "trilby"),
        sizes=("S", "M", "L", "one size"),
        features=(
            "Wide brim for sun and rain.",
            "Lined for a comfortable fit.",
            "Packable and easy to shape.",
        ),
        soft=True,
        neutral=(40, 40, 40),
        shapes=(
            ("body", "ellipse", (0.04, 0.56, 0.96, 0.78), None),
            ("body", "chord", (0.24, 0.16, 0.76, 1.00), (180, 360)),
            ("shade", "rectangle", (0.24, 0.49, 0.76, 0.58), None),
            ("shade", "line", ((0.42, 0.20), (0.50, 0.26), (0.58, 0.20)), 0.02),
        ),
    ),
    "mug": Category(
        path="Mugs|Ceramic mugs",
        nouns=("mug", "cup", "coffee mug"),
        sizes=("300 ml", "350 ml", "450 ml"),
        features=(
            "Dishwasher and microwave safe.",
            "A generous handle for a steady grip.",
            "Keeps coffee warm for longer.",
        ),
        soft=False,
        neutral=(70, 48, 36),
        shapes=(
            ("body", "ring", (0.54, 0.36, 0.88, 0.72), 0.07),
            ("body", "rounded", (0.20, 0.22, 0.68, 0.88), 0.06),
            ("body", "ellipse", (0.20, 0.16, 0.68, 0.28), None),
            ("neutral", "ellipse", (0.23, 0.18, 0.65, 0.26), None),
        ),
    ),
    "watch": Category(
        path="Watches|Analog watches",
        nouns=("watch", "wristwatch", "timepiece"),
        sizes=("36 mm", "40 mm", "42 mm", "44 mm"),
        features=(
            "Quartz movement and a scratch-resistant glass.",
            "Water resistant to 50 m.",
            "Adjustable strap with a pin buckle.",
        ),
        soft=False,
        neutral=(242, 240, 232),
        shapes=(
            ("body", "rounded", (0.38, 0.00, 0.62, 1.00), 0.04),
            ("body", "ellipse", (0.24, 0.24, 0.76, 0.76), None),
            ("neutral", "ellipse", (0.31, 0.31, 0.69, 0.69), None),
            ("shade", "line", ((0.50, 0.50), (0.50, 0.36)), 0.025),
            ("shade", "line", ((0.50, 0.50), (0.61, 0.56)), 0.025),
        ),
    ),
    "bottle": Category(
        path="Bottles|Water bottles",
        nouns=("water bottle", "bottle", "flask"),
        sizes=("500 ml", "750 ml", "1 L"),
        features=(
            "Leak-proof screw cap.",
            "Keeps drinks cold for 24 hours.",
            "BPA-free and easy to clean.",
        ),
        soft=False,
        neutral=(55, 55, 60),
        shapes=(
            ("body", "rounded", (0.29, 0.34, 0.71, 0.95), 0.07),
            ("body", "polygon", ((0.29, 0.42), (0.41, 0.24), (0.59, 0.24), (0.71, 0.42)), None),
            ("body", "rectangle", (0.41, 0.13, 0.59, 0.26), None),
            ("neutral", "rounded", (0.39, 0.04, 0.61, 0.15), 0.02),
        ),
    ),
    "lamp": Category(
        path="Lamps|Table lamps",
        nouns=("table lamp", "lamp", "desk lamp"),
        sizes=("30 cm", "45 cm", "60 cm"),
        features=(
            "Takes an E27 bulb.",
            "Soft, warm light for the bedside.",
            "Inline switch on the cable.",
        ),
        soft=False,
        neutral=(62, 62, 68),
        shapes=(
            ("body", "polygon", ((0.30, 0.06), (0.70, 0.06), (0.86, 0.48), (0.14, 0.48)), None),
            ("shade", "line", ((0.14, 0.48), (0.86, 0.48)), 0.03),
            ("neutral", "rectangle", (0.46, 0.48, 0.54, 0.85), None),
            ("neutral", "ellipse", (0.26, 0.82, 0.74, 0.95), None),
        ),
    ),
    "chair": Category(
        path="Chairs|Dining chairs",
        nouns=("chair", "dining chair", "side chair"),
        sizes=("seat height 45 cm", "seat height 47 cm"),
        features=(
            "Solid wood legs with felt pads.",
            "Upholstered seat and back.",
            "Stackable for small spaces.",
        ),
        soft=False,
        neutral=(95, 68, 42),
        shapes=(
            ("body", "rounded", (0.24, 0.04, 0.76, 0.50), 0.05),
            ("body", "polygon", ((0.18, 0.50), (0.82, 0.50), (0.87, 0.63), (0.13, 0.63)), None),
            ("shade", "line", ((0.13, 0.62), (0.87, 0.62)), 0.03),
            ("neutral", "rectangle", (0.16, 0.63, 0.23, 0.96), None),
            ("neutral", "rectangle", (0.77, 0.63, 0.84, 0.96), None),
        ),
    ),
}
CATEGORY_KEYS = tuple(CATEGORIES)

# Seed-sequence streams, so the catalogue and each batch draw from independent generators.
CATALOG_STREAM, UNSHIFTED_STREAM, SHIFTED_STREAM = 0, 1, 2
SHIFT_ORDER = ("new_colour", "dark", "blur", "noisy_title", "truncated_title")

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class PlannedRow:
    """One catalogue or batch row before its photo is drawn.

    photo_key: the seed-sequence entropy of the photo's own generator.
    image_shifts: shifts visible in the photo (new_colour, dark, blur).
    text_shifts: shifts in the title (new_colour, noisy_title, truncated_title).
    """

    product_id: str
    variant: str
    title: str
    name: str
    color: str
    category: str
    description: str
    image_path: str
    category_key: str
    pattern: str
    material: str
    photo_key: tuple[int, ...]
    image_shifts: tuple[str, ...] = ()
    text_shifts: tuple[str, ...] = ()


def write_sample(
    out_dir: str | Path,
    products: int,
    seed: int,
    batch_pairs: int,
    random_negatives: int = 1,
    hard_negatives: int = 1,
    progress: Progress | None = None,
) -> dict:
    """Writes the synthetic catalogue and two incoming batches into out_dir, replacing it.

    out_dir: folder to (re)create: catalog.csv, images/, batches/unshifted/, batches/shifted/.
        An existing catalogue there is replaced whole; any other non-empty folder is refused.
    products: how many distinct product_ids the catalogue has; about a third come in 2-3
        colour variants, so there are about 1.4 rows per product.
    seed: the same seed and arguments give byte-identical files.
    batch_pairs: image-text pairs in each batch, built like the training pairs.
    random_negatives, hard_negatives: negatives per row in the batches (pairs.build_pairs).
    progress: called as progress(done, total) with photos drawn so far; None stays silent.
    Returns the summary {rows, products, images, batches: {batch name: pair count}}.
    """
    _check_arguments(products, seed, batch_pairs, random_negatives, hard_negatives)
    out_dir = Path(out_dir)
    _check_replaceable(out_dir)

    catalog_rows = _plan_rows(seed, CATALOG_STREAM, "P", products, shifted=False)
    batch_plans = {
        name: _plan_batch(seed, stream, name, batch_pairs, random_negatives, hard_negatives)
        for name, stream in zip(BATCH_NAMES, (UNSHIFTED_STREAM, SHIFTED_STREAM), strict=True)
    }
    total = len(catalog_rows) + sum(len(plan[1]) for plan in batch_plans.values())
    counter = _ProgressCounter(progress, total)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(
        tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent)
    )
    try:
        # mkdtemp makes a private folder; the catalogue should read like any other output.
        os.chmod(staging, 0o755)
        _write_rows(staging, catalog_rows, counter)
        pd.DataFrame(
            [_catalog_record(row) for row in catalog_rows], columns=CATALOG_COLUMNS
        ).to_csv(staging / CATALOG_FILE, index=False, lineterminator="\n")
        for name, (pairs, drawn_rows) in batch_plans.items():
            batch_dir = staging / "batches" / name
            _write_rows(batch_dir, drawn_rows, counter)
            pairs.to_csv(batch_dir / PAIRS_FILE, index=False, lineterminator="\n")
        counter.finish()
        _replace_folder(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {
        "rows": len(catalog_rows),
        "products": products,
        "images": len(catalog_rows),
        "batches": {name: len(plan[0]) for name, plan in batch_plans.items()},
    }


def _check_arguments(
    products: int, seed: int, batch_pairs: int, random_negatives: int, hard_negatives: int
) -> None:
    """Raises ValueError naming the first argument that cannot make a sample."""
    minimums = {
        "products": (products, 2),
        "seed": (seed, 0),
        "batch_pairs": (batch_pairs, 1),
        "random_negatives": (random_negatives, 0),
        "hard_negatives": (hard_negatives, 0),
    }
    for name, (value, minimum) in minimums.items():
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
            raise ValueError(f"write_sample: {name}={value!r}; it must be an integer >= {minimum}")


def _check_replaceable(out_dir: Path) -> None:
    """Refuses to replace a folder that holds something other than a catalogue.

    write_sample deletes out_dir wholesale, so a typo such as '.' must not wipe a project.
    """
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise ValueError(f"write_sample: {out_dir} is a file; pass a folder path for the sample")
    if any(out_dir.iterdir()) and not (out_dir / CATALOG_FILE).exists():
        raise ValueError(
            f"write_sample: {out_dir} is not empty and has no {CATALOG_FILE}; refusing to replace "
            f"it. Pass an empty or new folder, or remove it first."
        )


def _replace_folder(staging: Path, out_dir: Path) -> None:
    """Moves the finished staging folder to out_dir, so readers never see half a catalogue."""
    if out_dir.exists():
        retired = staging.with_name(staging.name + ".old")
        out_dir.rename(retired)
        staging.rename(out_dir)
        shutil.rmtree(retired)
    else:
        staging.rename(out_dir)


class _ProgressCounter:
    """Counts drawn photos and reports every PROGRESS_EVERY of them to the callback."""

    def __init__(self, callback: Progress | None, total: int):
        self.callback = callback
        self.total = total
        self.done = 0

    def step(self) -> None:
        self.done += 1
        if self.callback is not None and self.done % PROGRESS_EVERY == 0:
            self.callback(self.done, self.total)

    def finish(self) -> None:
        if self.callback is not None and self.done % PROGRESS_EVERY != 0:
            self.callback(self.done, self.total)


def _catalog_record(row: PlannedRow) -> dict:
    return {column: getattr(row, column) for column in CATALOG_COLUMNS}


def _write_rows(folder: Path, rows: list[PlannedRow], counter: _ProgressCounter) -> None:
    """Draws and saves each row's photo under folder/images/, a few photos at a time.

    Pillow and numpy release the GIL while they work, so threads use the spare cores; every
    photo has its own generator and file, so the output does not depend on the scheduling.
    """
    (folder / "images").mkdir(parents=True, exist_ok=True)
    workers = min(DRAW_THREADS, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as executor:
        for _ in executor.map(lambda row: _write_photo(folder, row), rows):
            counter.step()


def _write_photo(folder: Path, row: PlannedRow) -> None:
    photo = draw_photo(
        row.category_key,
        _colour_rgb(row.color),
        row.pattern,
        row.material,
        np.random.default_rng(list(row.photo_key)),
        dark="dark" in row.image_shifts,
        blur="blur" in row.image_shifts,
    )
    photo.save(folder / row.image_path, format="PNG")


# ---------------------------------------------------------------------------------------------
# Planning rows: attributes and text.


def _plan_rows(seed: int, stream: int, prefix: str, count: int, shifted: bool) -> list[PlannedRow]:
    """The rows of `count` products; each product draws from its own generator.

    Keying every product by (seed, stream, index) keeps product i identical however many
    products follow it, which lets a batch grow until it has enough pairs.
    """
    width = max(4, len(str(count)))
    rows: list[PlannedRow] = []
    for index in range(count):
        rng = np.random.default_rng([seed, stream, index])
        rows.extend(
            _plan_product(rng, f"{prefix}{index + 1:0{width}d}", (seed, stream, index), shifted)
        )
    return rows


def _plan_product(
    rng: np.random.Generator, product_id: str, key: tuple[int, ...], shifted: bool
) -> list[PlannedRow]:
    """One product's rows: shared name, description, pattern and material; a colour each."""
    category_key = _pick(rng, CATEGORY_KEYS)
    category = CATEGORIES[category_key]
    brand = _pick(rng, BRANDS)
    noun = _pick(rng, category.nouns)
    name = f"{brand} {_pick(rng, STYLES)} {_title_case(noun)}"
    size = _pick(rng, category.sizes)
    pattern = PATTERNS[rng.choice(len(PATTERNS), p=PATTERN_WEIGHTS)]
    material = MATERIALS[rng.choice(len(MATERIALS), p=MATERIAL_WEIGHTS)]
    material_words = (SOFT_MATERIAL_WORDS if category.soft else HARD_MATERIAL_WORDS)[material]
    variant_count = int(rng.integers(2, 4)) if rng.random() < VARIANT_SHARE else 1
    colours = _pick_colours(rng, variant_count, shifted)

    colour_phrase = (
        f" in {_colour_word(rng, colours[0])}"
        if variant_count == 1
        else ", available in " + _joined([_colour_word(rng, colour) for colour in colours])
    )
    pattern_word = _pick(rng, PATTERN_WORDS[pattern])
    description = _pick(rng, DESCRIPTION_TEMPLATES).format(
        pattern=pattern_word,
        pattern_capital=pattern_word[0].upper() + pattern_word[1:],
        material=_pick(rng, material_words),
        noun=_pick(rng, category.nouns),
        brand=brand,
        colours=colour_phrase,
        feature=_pick(rng, category.features),
        size=size,
    )

    rows = []
    for variant_index, colour in enumerate(colours):
        title = _pick(rng, TITLE_TEMPLATES).format(
            name=name,
            colour=_colour_word(rng, colour),
            size=size,
            pattern=_pick(rng, PATTERN_WORDS[pattern]),
            material=_pick(rng, material_words),
        )
        if rng.random() < TITLE_TYPO_SHARE:
            title = _typo(rng, title)
        image_shifts: list[str] = []
        text_shifts: list[str] = []
        if shifted:
            if colour in NEW_COLOURS:
                image_shifts.append("new_colour")
                text_shifts.append("new_colour")
            # Three photos in four are darker, half are blurred, each one at least one of both.
            look = rng.random()
            if look < 0.75:
                image_shifts.append("dark")
            if look >= 0.5:
                image_shifts.append("blur")
            if rng.random() < 0.5:
                title = _noisy(rng, title)
                text_shifts.append("noisy_title")
            else:
                title = " ".join(title.split()[: int(rng.integers(2, 4))])
                text_shifts.append("truncated_title")
        rows.append(
            PlannedRow(
                product_id=product_id,
                # Single-colour products leave variant empty, as most shop feeds do.
                variant=colour if variant_count > 1 else "",
                title=title,
                name=name,
                color=colour,
                category=category.path,
                description=description,
                image_path=f"images/{product_id.lower()}-{colour}.png",
                category_key=category_key,
                pattern=pattern,
                material=material,
                photo_key=(*key, variant_index + 1),
                image_shifts=tuple(image_shifts),
                text_shifts=tuple(text_shifts),
            )
        )
    return rows


def _pick_colours(rng: np.random.Generator, count: int, shifted: bool) -> list[str]:
    """`count` distinct colour names; in a shifted world each is a new colour half the time."""
    known = list(COLOURS)
    chosen = [known[index] for index in rng.choice(len(known), size=count, replace=False)]
    if shifted:
        new = list(NEW_COLOURS)
        unused_new = [new[index] for index in rng.permutation(len(new))]
        for position in range(count):
            if rng.random() < SHIFT_NEW_COLOUR_SHARE:
                chosen[position] = unused_new.pop()
    return chosen


def _colour_rgb(colour: str) -> tuple[int, int, int]:
    return COLOURS[colour] if colour in COLOURS else NEW_COLOURS[colour]


def _colour_word(rng: np.random.Generator, colour: str) -> str:
    """The colour's own name, or now and then a synonym (grey, dark blue, ...)."""
    words = COLOUR_WORDS.get(colour, (colour,))
    if len(words) > 1 and rng.random() < SYNONYM_SHARE:
        return _pick(rng, words[1:])
    return colour


def _pick(rng: np.random.Generator, options: tuple | list):
    """One option, chosen by index so the result keeps its Python type."""
    return options[int(rng.integers(len(options)))]


def _title_case(noun: str) -> str:
    return " ".join(part[0].upper() + part[1:] for part in noun.split(" "))


def _joined(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _typo(rng: np.random.Generator, text: str) -> str:
    """Swaps two neighbouring letters, or drops one, inside one word of three letters or more."""
    words = text.split(" ")
    candidates = [index for index, word in enumerate(words) if len(word) >= 3 and word.isalpha()]
    if not candidates:
        return text
    index = _pick(rng, candidates)
    words[index] = _word_typo(rng, words[index], operations=("swap", "drop"))
    return " ".join(words)


def _noisy(rng: np.random.Generator, text: str) -> str:
    """Puts a typo (swap, drop, repeat or replace a letter) into about 30% of the words."""
    words = text.split(" ")
    for index, word in enumerate(words):
        if len(word) >= 2 and rng.random() < SHIFT_WORD_TYPO_SHARE:
            words[index] = _word_typo(rng, word, operations=("swap", "drop", "repeat", "replace"))
    return " ".join(words)


def _word_typo(rng: np.random.Generator, word: str, operations: tuple[str, ...]) -> str:
    operation = _pick(rng, operations)
    position = int(rng.integers(len(word) - 1))
    if operation == "swap":
        return word[:position] + word[position + 1] + word[position] + word[position + 2 :]
    if operation == "drop":
        return word[:position] + word[position + 1 :]
    if operation == "repeat":
        return word[: position + 1] + word[position:]
    letter = chr(ord("a") + int(rng.integers(26)))
    return word[:position] + letter + word[position + 1 :]


def _plan_batch(
    seed: int,
    stream: int,
    name: str,
    batch_pairs: int,
    random_negatives: int,
    hard_negatives: int,
) -> tuple[pd.DataFrame, list[PlannedRow]]:
    """A batch's pairs.csv frame and the rows whose photos it shows.

    Starts from ceil(batch_pairs / pairs per row) products and adds products while the
    pairs fall short (a tiny batch can lack negatives), then keeps the first batch_pairs.
    """
    shifted = name == "shifted"
    prefix = "S" if shifted else "B"
    pairs_per_row = 1 + random_negatives + hard_negatives
    product_count = max(2, math.ceil(batch_pairs / pairs_per_row))
    pair_seed = int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])
    while True:
        rows = _plan_rows(seed, stream, prefix, product_count, shifted)
        frame = pd.DataFrame([_catalog_record(row) for row in rows], columns=CATALOG_COLUMNS)
        pairs = build_pairs(frame, random_negatives, hard_negatives, pair_seed)
        if len(pairs) >= batch_pairs:
            break
        product_count += max(1, math.ceil((batch_pairs - len(pairs)) / pairs_per_row))
    pairs = pairs.head(batch_pairs).reset_index(drop=True)

    texts = item_text(frame)
    records = []
    for position, pair in pairs.iterrows():
        image_row = rows[int(pair["image_row"])]
        text_row = rows[int(pair["text_row"])]
        shifts = set(image_row.image_shifts) | set(text_row.text_shifts)
        records.append(
            {
                "pair_id": f"{name}-{position + 1:05d}",
                "image_path": image_row.image_path,
                "text": texts.iloc[int(pair["text_row"])],
                "product_id": image_row.product_id,
                "expected_match": int(pair["label"]),
                "pair_kind": pair["kind"],
                "shift": "+".join(shift for shift in SHIFT_ORDER if shift in shifts) or "none",
            }
        )
    drawn = sorted(set(pairs["image_row"].astype(int)))
    return pd.DataFrame(records, columns=PAIR_COLUMNS), [rows[index] for index in drawn]


# ---------------------------------------------------------------------------------------------
# Drawing photos.


def draw_photo(
    category_key: str,
    colour: tuple[int, int, int],
    pattern: str,
    material: str,
    rng: np.random.Generator,
    dark: bool = False,
    blur: bool = False,
) -> Image.Image:
    """A 96x96 RGB product photo: the category's silhouette in colour, pattern and material.

    rng: varies position, scale, rotation, backdrop and lighting; the same state gives the
        same photo.
    dark, blur: the shifted batch's camera problems (brightness x0.35-0.55, Gaussian blur).
    """
    if category_key not in CATEGORIES:
        raise ValueError(
            f"draw_photo: unknown category {category_key!r}; use one of {CATEGORY_KEYS}"
        )
    if pattern not in PATTERNS or material not in MATERIALS:
        raise ValueError(
            f"draw_photo: pattern {pattern!r} / material {material!r}; "
            f"use one of {PATTERNS} / {MATERIALS}"
        )
    category = CATEGORIES[category_key]
    size = DRAW_SIZE
    colour_array = np.array(colour, dtype=np.float32)
    body, shade, neutral, rim = _category_masks(category_key)

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


@lru_cache(maxsize=len(CATEGORIES))
def _category_masks(category_key: str) -> tuple[np.ndarray, ...]:
    """The body, shade and neutral masks of a category, and the rim around all three.

    The silhouette of a category never changes, so it is drawn once per process.
    """
    body, shade, neutral = _draw_layers(CATEGORIES[category_key].shapes, DRAW_SIZE)
    silhouette = np.maximum(np.maximum(body, shade), neutral)
    # A dark rim keeps white objects readable on light backdrops and black ones on dark.
    rim = np.asarray(Image.fromarray(silhouette).filter(ImageFilter.MaxFilter(5)))
    return body, shade, neutral, rim


def _draw_layers(shapes: tuple[tuple, ...], size: int) -> tuple[np.ndarray, ...]:
    """Rasterises the shapes into body, shade and neutral masks (0 or 255) at size x size.

    Kinds: polygon/line (points; line width), rectangle/ellipse (box), rounded (box, corner
    radius), chord (box, start and end degrees), arc (box, width; the upper half), ring (box,
    width). Coordinates and widths are fractions of the canvas side.
    """
    masks = {layer: Image.new("L", (size, size), 0) for layer in ("body", "shade", "neutral")}
    for layer, kind, coordinates, extra in shapes:
        draw = ImageDraw.Draw(masks[layer])
        if kind in ("polygon", "line"):
            points = [(x * size, y * size) for x, y in coordinates]
            if kind == "polygon":
                draw.polygon(points, fill=255)
            else:
                draw.line(points, fill=255, width=max(1, round(extra * size)), joint="curve")
            continue
        box = [value * size for value in coordinates]
        if kind == "rectangle":
            draw.rectangle(box, fill=255)
        elif kind == "ellipse":
            draw.ellipse(box, fill=255)
        elif kind == "rounded":
            draw.rounded_rectangle(box, radius=extra * size, fill=255)
        elif kind == "chord":
            draw.chord(box, extra[0], extra[1], fill=255)
        elif kind == "arc":
            draw.arc(box, 180, 360, fill=255, width=max(1, round(extra * size)))
        elif kind == "ring":
            draw.ellipse(box, outline=255, width=max(1, round(extra * size)))
        else:
            raise ValueError(f"_draw_layers: unknown shape kind {kind!r}")
    return tuple(np.asarray(masks[layer]) for layer in ("body", "shade", "neutral"))


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

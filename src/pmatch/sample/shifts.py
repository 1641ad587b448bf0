"""Writes incoming deliveries of new listings, unshifted or with one kind of shift, for monitoring.

A delivery is a folder in the catalogue format (catalog.csv and its photos) with a `label`
column: 1 when the listing's photo shows the product its title names (a genuine listing),
0 when it shows another product. Its products are never in the sample catalogue: they come
from their own seed-sequence stream and carry the product_id letter N.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from pmatch.artifacts import CATALOG_FILE
from pmatch.sample.categories import NEW_CATEGORIES_FILE, Category, load_categories
from pmatch.sample.planning import CATALOG_COLUMNS, PlannedRow, catalog_record, plan_rows
from pmatch.sample.render import IMAGE_SIZE, draw_photo
from pmatch.sample.words import colour_rgb
from pmatch.sample.writer import replace_folder

# Every kind of delivery write_delivery makes; "none" is an unshifted delivery.
SHIFTS = (
    "none",
    "blur",
    "dark",
    "jpeg10",
    "crop",
    "truncated_titles",
    "other_language",
    "shuffled_words",
    "new_categories",
    "fewer_genuine",
    "compensating",
)
DELIVERY_COLUMNS = [*CATALOG_COLUMNS, "label"]
# Seed-sequence streams after the sample's (0-2), so deliveries share no product with the
# catalogue or its batches; products of new categories have a stream of their own.
DELIVERY_STREAM, NEW_CATEGORY_STREAM = 3, 4
PRODUCT_PREFIX = "N"
DEFAULT_GENUINE_SHARE = 0.9
# The share of genuine listings a shift sets when the caller does not: fewer genuine ones,
# or (with darker photos) more of them, which keeps the score distribution about the same.
SHIFT_GENUINE_SHARE = {"fewer_genuine": 0.7, "compensating": 1.0}
# A listing that is not genuine shows a product of the same category this often (a hard
# case: same silhouette, another colour), otherwise any other product of the delivery.
SAME_CATEGORY_SHARE = 0.5
JPEG_QUALITY = 10
# The compensating shift's photos are darker by this factor: measured with the sample's
# model on 360 genuine listings, enough to lower F1 by about 0.06 while the higher share of
# genuine listings keeps the mean score where an unshifted delivery's is (0.88).
COMPENSATING_BRIGHTNESS = (0.6, 0.7)
CROP_SIDE = 0.6
TRUNCATED_WORDS = 2
ROWS_PER_PRODUCT = 1.4
DRAW_THREADS = 4

# English words of titles and descriptions and their German words; longer phrases win.
GERMAN_WORDS = {
    "red": "rot",
    "blue": "blau",
    "green": "grün",
    "yellow": "gelb",
    "orange": "orange",
    "purple": "lila",
    "violet": "violett",
    "pink": "rosa",
    "rose": "rosé",
    "black": "schwarz",
    "white": "weiß",
    "gray": "grau",
    "grey": "grau",
    "brown": "braun",
    "teal": "petrol",
    "navy": "marine",
    "navy blue": "marineblau",
    "dark blue": "dunkelblau",
    "beige": "beige",
    "sand": "sandfarben",
    "t-shirt": "T-Shirt",
    "tee": "Shirt",
    "top": "Oberteil",
    "crew-neck tee": "Rundhals-Shirt",
    "trousers": "Hose",
    "pants": "Hose",
    "chinos": "Chinohose",
    "slacks": "Stoffhose",
    "sneaker": "Turnschuh",
    "trainer": "Sportschuh",
    "shoe": "Schuh",
    "running shoe": "Laufschuh",
    "handbag": "Handtasche",
    "bag": "Tasche",
    "tote": "Einkaufstasche",
    "shoulder bag": "Umhängetasche",
    "hat": "Hut",
    "fedora": "Filzhut",
    "trilby": "Herrenhut",
    "mug": "Becher",
    "cup": "Tasse",
    "coffee mug": "Kaffeebecher",
    "watch": "Uhr",
    "wristwatch": "Armbanduhr",
    "timepiece": "Zeitmesser",
    "water bottle": "Trinkflasche",
    "bottle": "Flasche",
    "flask": "Thermosflasche",
    "table lamp": "Tischleuchte",
    "lamp": "Lampe",
    "desk lamp": "Schreibtischlampe",
    "chair": "Stuhl",
    "dining chair": "Esszimmerstuhl",
    "side chair": "Beistellstuhl",
    "classic": "klassisch",
    "everyday": "Alltags",
    "urban": "städtisch",
    "heritage": "Tradition",
    "essential": "Basis",
    "coastal": "Küsten",
    "vintage": "Retro",
    "nordic": "nordisch",
    "summit": "Gipfel",
    "harbor": "Hafen",
    "solid": "einfarbig",
    "plain": "schlicht",
    "solid-colour": "unifarben",
    "striped": "gestreift",
    "stripy": "streifig",
    "stripe-pattern": "Streifenmuster",
    "polka dot": "gepunktet",
    "dotted": "getupft",
    "spotted": "gefleckt",
    "checked": "kariert",
    "check": "Karo",
    "plaid": "Schottenkaro",
    "checkered": "kariert",
    "cotton": "Baumwolle",
    "canvas": "Segeltuch",
    "twill": "Köper",
    "satin": "Satin",
    "patent": "Lack",
    "shiny": "glänzend",
    "knit": "Strick",
    "ribbed": "gerippt",
    "textured": "strukturiert",
    "matte": "matt",
    "matt": "matt",
    "stone-finish": "Steinoptik",
    "glossy": "glänzend",
    "high-gloss": "Hochglanz",
    "lacquered": "lackiert",
    "grained": "genarbt",
    "speckled": "gesprenkelt",
    "small": "klein",
    "medium": "mittel",
    "large": "groß",
    "one size": "Einheitsgröße",
    "seat height": "Sitzhöhe",
    "size": "Größe",
    "available in": "erhältlich in",
    "and": "und",
    "from": "von",
    "made by": "hergestellt von",
    "with": "mit",
    "for": "für",
}


@dataclass(frozen=True)
class _Listing:
    """One listing before the photos are drawn: its text row and the photo it shows.

    photo_of: the row whose photo the listing shows (itself when genuine).
    image_path: photo_of's photo file; a listing that is not genuine names the other
        product's file, as a seller reusing another listing's photo would.
    """

    row: PlannedRow
    photo_of: PlannedRow
    genuine: bool
    image_path: str


@dataclass(frozen=True)
class _Photo:
    """One photo file to draw: the row it shows, its path and its crop (None: uncropped)."""

    row: PlannedRow
    image_path: str
    crop_box: tuple[int, int, int, int] | None


def write_delivery(
    out_dir: str | Path,
    *,
    shift: str,
    listings: int,
    seed: int,
    genuine_share: float | None = None,
    first_product: int = 0,
) -> Path:
    """Writes a delivery of new listings into out_dir (catalog.csv with a label column, and
    images/), replacing a delivery already there. Returns out_dir.

    shift: one of SHIFTS. Photos: blur (Gaussian blur), dark (brightness x0.35-0.55),
        jpeg10 (saved as JPEG at quality 10), crop (a 60% square off centre, scaled back up).
        Titles: truncated_titles (the first two words), other_language (colours, nouns,
        patterns and materials in German, descriptions too), shuffled_words (the title's words
        in another order). new_categories: products of kinds the catalogue never has
        (new_categories.yaml). fewer_genuine: 0.7 of the listings genuine. compensating:
        photos x0.6-0.7 darker and every listing genuine, which keeps the mean score.
    listings: how many rows (listings) the delivery has.
    seed: the same seed and arguments give byte-identical files. With one seed, every shift
        but new_categories lists the same products with the same photos before the shift, so
        shifted and unshifted deliveries can be compared pair by pair.
    genuine_share: the share of listings whose photo shows their own product (label 1);
        None takes the shift's (0.9, fewer_genuine 0.7, compensating 1.0).
    first_product: products are numbered from first_product + 1, so deliveries written with
        one seed and different first_product values list different products.
    """
    _check_arguments(shift, listings, seed, genuine_share, first_product)
    if genuine_share is None:
        genuine_share = SHIFT_GENUINE_SHARE.get(shift, DEFAULT_GENUINE_SHARE)
    out_dir = Path(out_dir)
    _check_replaceable(out_dir)

    categories = (
        load_categories(NEW_CATEGORIES_FILE) if shift == "new_categories" else load_categories()
    )
    stream = NEW_CATEGORY_STREAM if shift == "new_categories" else DELIVERY_STREAM
    rows = _plan_listing_rows(seed, stream, listings, categories, first_product)
    planned, photos = _plan_listings(rows, seed, stream, first_product, shift, genuine_share)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(
        tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent)
    )
    try:
        os.chmod(staging, 0o755)
        (staging / "images").mkdir()
        workers = min(DRAW_THREADS, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=workers) as executor:
            list(
                executor.map(lambda photo: _write_photo(staging, photo, shift, categories), photos)
            )
        title_rng = np.random.default_rng([seed, stream, first_product, 2])
        records = []
        for listing in planned:
            record = catalog_record(listing.row)
            record.update(_shift_text(record, shift, title_rng))
            record["image_path"] = listing.image_path
            record["label"] = int(listing.genuine)
            records.append(record)
        frame = pd.DataFrame(records, columns=DELIVERY_COLUMNS)
        frame.to_csv(staging / CATALOG_FILE, index=False, lineterminator="\n")
        replace_folder(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def _check_arguments(
    shift: str, listings: int, seed: int, genuine_share: float | None, first_product: int
) -> None:
    """Raises ValueError naming the first argument that cannot make a delivery."""
    if shift not in SHIFTS:
        raise ValueError(f"write_delivery: shift={shift!r}; use one of {SHIFTS}")
    for name, value, minimum in (
        ("listings", listings, 2),
        ("seed", seed, 0),
        ("first_product", first_product, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
            raise ValueError(
                f"write_delivery: {name}={value!r}; it must be an integer >= {minimum}"
            )
    if genuine_share is not None and not (
        isinstance(genuine_share, float | int) and 0.0 <= genuine_share <= 1.0
    ):
        raise ValueError(
            f"write_delivery: genuine_share={genuine_share!r}; pass a number from 0 to 1, "
            "or None for the shift's own share"
        )


def _check_replaceable(out_dir: Path) -> None:
    """Refuses to replace a folder that holds something other than a delivery."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise ValueError(f"write_delivery: {out_dir} is a file; pass a folder for the delivery")
    if any(out_dir.iterdir()) and not (out_dir / CATALOG_FILE).exists():
        raise ValueError(
            f"write_delivery: {out_dir} is not empty and has no {CATALOG_FILE}; refusing to "
            "replace it. Pass an empty or new folder, or remove it first."
        )


def _plan_listing_rows(
    seed: int,
    stream: int,
    listings: int,
    categories: Mapping[str, Category],
    first_product: int,
) -> list[PlannedRow]:
    """The first `listings` rows of as many products as it takes (a few colours each)."""
    count = max(2, math.ceil(listings / ROWS_PER_PRODUCT))
    while True:
        rows = plan_rows(
            seed,
            stream,
            PRODUCT_PREFIX,
            count,
            shifted=False,
            categories=categories,
            first_index=first_product,
        )
        if len(rows) >= listings:
            return rows[:listings]
        count += max(1, math.ceil((listings - len(rows)) / ROWS_PER_PRODUCT))


def _plan_listings(
    rows: list[PlannedRow],
    seed: int,
    stream: int,
    first_product: int,
    shift: str,
    genuine_share: float,
) -> tuple[list[_Listing], list[_Photo]]:
    """Which listings are genuine, which photo each other one shows, and the photo files.

    The draws do not depend on the shift (each has its own generator), so one seed gives
    the same listings under every shift but new_categories.
    """
    rng = np.random.default_rng([seed, stream, first_product, 1])
    genuine_count = round(genuine_share * len(rows))
    genuine = np.zeros(len(rows), dtype=bool)
    genuine[rng.permutation(len(rows))[:genuine_count]] = True
    extension = "jpg" if shift == "jpeg10" else "png"
    paths = [f"{Path(row.image_path).with_suffix('').as_posix()}.{extension}" for row in rows]
    position = {id(row): index for index, row in enumerate(rows)}
    listings = []
    for index, row in enumerate(rows):
        photo_of = row if genuine[index] else _other_product(rng, rows, row)
        listings.append(
            _Listing(row, photo_of, bool(genuine[index]), paths[position[id(photo_of)]])
        )
    # A crop is drawn for every row, so the other draws are the same under every shift.
    crop_rng = np.random.default_rng([seed, stream, first_product, 3])
    crop_boxes = [_crop_box(crop_rng) for _ in rows]
    shown = sorted({position[id(listing.photo_of)] for listing in listings})
    photos = [
        _Photo(rows[index], paths[index], crop_boxes[index] if shift == "crop" else None)
        for index in shown
    ]
    return listings, photos


def _other_product(rng: np.random.Generator, rows: list[PlannedRow], row: PlannedRow) -> PlannedRow:
    """A row of another product: of the same category SAME_CATEGORY_SHARE of the time."""
    others = [other for other in rows if other.product_id != row.product_id]
    same_category = [other for other in others if other.category_key == row.category_key]
    pick_same = rng.random() < SAME_CATEGORY_SHARE
    pool = same_category if pick_same and same_category else others
    return pool[int(rng.integers(len(pool)))]


def _crop_box(rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A CROP_SIDE square whose centre lies off the photo's centre on both axes."""
    side = round(CROP_SIDE * IMAGE_SIZE)
    room = IMAGE_SIZE - side
    # Each corner coordinate is near one edge (the first or last quarter of the room),
    # never in the middle, so the crop cuts part of the product off.
    left, top = (
        int(rng.uniform(0, room / 4))
        if rng.random() < 0.5
        else int(rng.uniform(3 * room / 4, room))
        for _ in range(2)
    )
    return left, top, left + side, top + side


def _write_photo(
    folder: Path, photo: _Photo, shift: str, categories: Mapping[str, Category]
) -> None:
    row = photo.row
    image = draw_photo(
        row.category_key,
        colour_rgb(row.color),
        row.pattern,
        row.material,
        np.random.default_rng(list(row.photo_key)),
        dark=shift == "dark",
        blur=shift == "blur",
        categories=categories,
    )
    if shift == "compensating":
        factor = np.random.default_rng([*row.photo_key, 4]).uniform(*COMPENSATING_BRIGHTNESS)
        values = np.asarray(image, dtype=np.float32) * factor
        image = Image.fromarray(np.clip(values, 0, 255).astype(np.uint8), "RGB")
    if photo.crop_box is not None:
        image = image.crop(photo.crop_box).resize(
            (IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS
        )
    path = folder / photo.image_path
    if shift == "jpeg10":
        image.save(path, format="JPEG", quality=JPEG_QUALITY)
    else:
        image.save(path, format="PNG")


def _shift_text(record: dict, shift: str, rng: np.random.Generator) -> dict:
    """The record's text columns after a text shift (none of them for other shifts)."""
    if shift == "truncated_titles":
        return {"title": " ".join(record["title"].split()[:TRUNCATED_WORDS])}
    if shift == "shuffled_words":
        return {"title": _shuffled(record["title"], rng)}
    if shift == "other_language":
        return {column: to_german(record[column]) for column in ("title", "name", "description")}
    return {}


def _shuffled(title: str, rng: np.random.Generator) -> str:
    """The title's words in another order (rotated by one when the shuffle kept the order)."""
    words = title.split()
    order = rng.permutation(len(words))
    shuffled = [words[index] for index in order]
    if len(words) > 1 and shuffled == words:
        shuffled = words[1:] + words[:1]
    return " ".join(shuffled)


def to_german(text: str) -> str:
    """The text with the English words of GERMAN_WORDS replaced by their German words; a word
    that starts with a capital keeps it."""
    return _GERMAN_PATTERN.sub(_german_word, text)


def _german_word(match: re.Match) -> str:
    english = match.group(0)
    german = GERMAN_WORDS[english.lower()]
    return german[0].upper() + german[1:] if english[0].isupper() else german


_GERMAN_PATTERN = re.compile(
    r"(?<![\w-])("
    + "|".join(re.escape(word) for word in sorted(GERMAN_WORDS, key=len, reverse=True))
    + r")(?![\w-])",
    re.IGNORECASE,
)

"""Plans the sample's rows: each product's category, colours, pattern, material and texts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from pmatch.sample.categories import Category, load_categories
from pmatch.sample.words import (
    BRANDS,
    COLOUR_WORDS,
    COLOURS,
    DESCRIPTION_TEMPLATES,
    HARD_MATERIAL_WORDS,
    MATERIAL_WEIGHTS,
    MATERIALS,
    NEW_COLOURS,
    PATTERN_WEIGHTS,
    PATTERN_WORDS,
    PATTERNS,
    SOFT_MATERIAL_WORDS,
    STYLES,
    TITLE_TEMPLATES,
)

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
# Seed-sequence streams, so the catalogue and each batch draw from independent generators.
CATALOG_STREAM, UNSHIFTED_STREAM, SHIFTED_STREAM = 0, 1, 2

VARIANT_SHARE = 1 / 3
SYNONYM_SHARE = 0.3
TITLE_TYPO_SHARE = 0.05
SHIFT_NEW_COLOUR_SHARE = 0.5
SHIFT_WORD_TYPO_SHARE = 0.3


@dataclass(frozen=True)
class PlannedRow:
    """One catalogue or batch row before its photo is drawn.

    category_key: the row's entry in categories.yaml, which says how its photo is drawn.
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


def catalog_record(row: PlannedRow) -> dict:
    """The row's catalog.csv columns."""
    return {column: getattr(row, column) for column in CATALOG_COLUMNS}


def plan_rows(
    seed: int,
    stream: int,
    prefix: str,
    count: int,
    shifted: bool,
    categories: Mapping[str, Category] | None = None,
    first_index: int = 0,
) -> list[PlannedRow]:
    """The rows of `count` products; each product draws from its own generator.

    stream: which seed-sequence stream (CATALOG_STREAM, UNSHIFTED_STREAM, SHIFTED_STREAM).
    prefix: the product_id's letter, P for the catalogue and B or S for the batches.
    shifted: draw the shifted batch's new colours, camera problems and noisy titles.
    categories: the kinds of product to draw from; None means categories.yaml.
    first_index: the index of the first product (product_id numbers start one above it).

    Keying every product by (seed, stream, index) keeps product i identical however many
    products follow it, which lets a batch grow until it has enough pairs.
    """
    if categories is None:
        categories = load_categories()
    width = max(4, len(str(first_index + count)))
    rows: list[PlannedRow] = []
    for index in range(first_index, first_index + count):
        rng = np.random.default_rng([seed, stream, index])
        product_id = f"{prefix}{index + 1:0{width}d}"
        rows.extend(_plan_product(rng, product_id, (seed, stream, index), shifted, categories))
    return rows


def _plan_product(
    rng: np.random.Generator,
    product_id: str,
    key: tuple[int, ...],
    shifted: bool,
    categories: Mapping[str, Category],
) -> list[PlannedRow]:
    """One product's rows: shared name, description, pattern and material; a colour each."""
    category_key = _pick(rng, tuple(categories))
    category = categories[category_key]
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

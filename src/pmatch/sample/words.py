"""The words and colours of the sample catalogue: names, materials, patterns and templates."""

from __future__ import annotations

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


def colour_rgb(colour: str) -> tuple[int, int, int]:
    """The RGB of a catalogue colour or a new colour, by name."""
    if colour in COLOURS:
        return COLOURS[colour]
    if colour in NEW_COLOURS:
        return NEW_COLOURS[colour]
    raise ValueError(
        f"colour_rgb: unknown colour {colour!r}; use one of {(*COLOURS, *NEW_COLOURS)}"
    )

"""The jinja2 templates of the HTML pages pmatch writes, and render_page, which fills one."""

from __future__ import annotations


def render_page(template: str, **context) -> str:
    """The page template (a file name in this folder, such as errors.html.j2) filled with
    context. Values are HTML-escaped, so catalogue text shows as text, never as markup."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    # select_autoescape() alone escapes only names ending in .html; these end in .html.j2.
    # Block tags ({% for %}, {% if %}) leave no blank lines behind them.
    environment = Environment(
        loader=PackageLoader("pmatch", "templates"),
        autoescape=select_autoescape(("html", "html.j2")),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return environment.get_template(template).render(**context)

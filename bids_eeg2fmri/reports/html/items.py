"""The building blocks of a report page and its rendering: the items a section holds (text,
note, facts, table, figure), sections, relative links, the guard that turns a failing
part into a note, and :func:`_render`, which fills the Jinja2 template
(``reports/templates/report.html.j2``) and writes the page atomically.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bids_eeg2fmri import __version__
from bids_eeg2fmri.bidsio.files import write_text_atomic
from bids_eeg2fmri.reports.html.outputs import _Context

LOGGER = logging.getLogger(__name__)


def _href(path: Path, html_dir: Path) -> str:
    return quote(Path(os.path.relpath(path, html_dir)).as_posix())


def _guarded(build: Callable[[], list[dict]], what: str) -> list[dict]:
    """``build()``, or a note if it failed on unexpected content (the report goes on)."""
    try:
        return build()
    except Exception as exc:
        LOGGER.warning("Report: %s could not be shown: %s", what, exc)
        return [_note(f"{what} could not be shown ({type(exc).__name__}: {exc}).")]


def _figure_item(
    title: str, path: Path, context: _Context, caption: str, draw: Callable[[Path], Any]
) -> dict:
    """Draw a figure to ``path``; its item, or a note if drawing failed."""
    try:
        draw(path)
    except Exception as exc:
        LOGGER.warning("Report figure %s could not be drawn: %s", path.name, exc)
        return _note(f"{title}: the figure could not be drawn ({exc}).")
    return {
        "kind": "figure",
        "title": title,
        "src": _href(path, context.html_dir),
        "caption": caption,
    }


def _text(text: str) -> dict:
    return {"kind": "text", "text": text}


def _note(text: str) -> dict:
    return {"kind": "note", "text": text}


def _facts(entries: Iterable[tuple[str, str]]) -> dict:
    return {"kind": "facts", "entries": list(entries)}


def _table(columns, rows, *, title=None, caption=None, classes=None, css="") -> dict:
    return {
        "kind": "table",
        "css": css,
        "title": title,
        "columns": list(columns),
        "rows": rows,
        "caption": caption,
        "classes": classes,
    }


def _section(ident: str, title: str, items: list[dict], level: str = "top") -> dict:
    return {"kind": "section", "id": ident, "title": title, "items": items, "level": level}


def _render(path: Path, *, title: str, subtitle: str, sections: list[dict]) -> Path:
    """Render the page template and write it atomically."""
    from importlib.resources import files

    import jinja2

    source = files("bids_eeg2fmri.reports").joinpath("templates", "report.html.j2")
    environment = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True
    )
    template = environment.from_string(source.read_text(encoding="utf-8"))
    html = template.render(
        title=title,
        subtitle=subtitle,
        sections=sections,
        version=__version__,
        date=_dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
    )
    return write_text_atomic(path, html)

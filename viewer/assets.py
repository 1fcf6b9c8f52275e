"""The viewer's script and style sheet: package data in ``viewer/static/``, written next to the pages.

No CDN, no build step: ``build_site`` copies ``app.js`` and ``style.css`` as they are. Every node
built from data goes through ``el()``/``text()`` in ``app.js`` (``textContent``, never
``innerHTML``), so trajectory text cannot become markup. ``ERROR_COLLECTOR``
(``error_collector.js``, one line) is inlined first in each page: it counts uncaught errors and
rejected promises into ``<pre id="ms-errors" data-count>`` so a test (or a person) sees them in the DOM.
"""

from __future__ import annotations

from importlib import resources

__all__ = ["APP_JS", "ERROR_COLLECTOR", "STYLE_CSS"]


def _static(name: str) -> str:
    """The text of ``viewer/static/<name>`` (declared as package data in ``setup.py``)."""
    return (resources.files(__package__) / "static" / name).read_text(encoding="utf-8")


APP_JS = _static("app.js")
STYLE_CSS = _static("style.css")
ERROR_COLLECTOR = _static("error_collector.js").rstrip("\n")

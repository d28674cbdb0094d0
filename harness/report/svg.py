"""Make a saved plot fit inside the page: no XML prolog, no namespace or metadata URLs, ids unique per plot.

The page must load nothing from anywhere (it is opened from a file, often offline, and a
sign-off must not change when a remote resource does). Inline SVG in HTML5 needs no
namespace declarations, so they go, with matplotlib's RDF metadata; every id gets the
plot's prefix, so two plots on one page never resolve each other's markers or clip paths.
"""

from __future__ import annotations

import re

_PROLOG = re.compile(r"<\?xml[^>]*\?>|<!DOCTYPE[^>]*>", re.IGNORECASE)
_METADATA = re.compile(r"<metadata>.*?</metadata>", re.DOTALL)
_XMLNS = re.compile(r'\s+xmlns(?::\w+)?="[^"]*"')
_ID = re.compile(r'\bid="([^"]+)"')


def inline_svg(text: str, prefix: str) -> str:
    """The SVG document ``text`` as an element for an HTML page, its ids prefixed with ``prefix``.

    >>> inline_svg('<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><g id="a"/>'
    ...            '<use xlink:href="#a"/><path clip-path="url(#a)"/></svg>', "p1")
    '<svg><g id="p1-a"/><use xlink:href="#p1-a"/><path clip-path="url(#p1-a)"/></svg>'
    """
    text = _METADATA.sub("", _PROLOG.sub("", text))
    text = _XMLNS.sub("", text).strip()
    ids = set(_ID.findall(text))
    if not ids:
        return text

    def rename(m: re.Match[str]) -> str:
        lead, name = m.group(1), m.group(2)
        return f"{lead}{prefix}-{name}" if name in ids else m.group(0)

    return re.sub(r'(\bid="|href="#|url\(#)([^")]+)', rename, text)

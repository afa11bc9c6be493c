"""Check a built book: every internal link, anchor and image in the HTML points at something that exists.

Sphinx's `-n` checks cross-references it knows about; this checks the rendered result, including
links written as plain Markdown, images of executed notebooks and the static assets.

    python book/_ext/check_html.py _build/html     # prints the problems, exit status 1 if any
"""
from __future__ import annotations

import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

# (tag, attribute) pairs whose value is a URL to check.
URL_ATTRS = {("a", "href"), ("img", "src"), ("link", "href"), ("script", "src"), ("object", "data"),
             ("source", "src"), ("iframe", "src")}


class _Page(HTMLParser):
    """Collects the element ids (link targets) and the URLs of one HTML page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.urls: list[tuple[str, str]] = []  # (tag, url)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name == "id" or (tag == "a" and name == "name"):
                self.ids.add(value)
            if (tag, name) in URL_ATTRS:
                self.urls.append((tag, value))


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8", errors="replace"))
    return page


def check_html(html_dir: str | Path) -> list[str]:
    """Problems found under `html_dir` (empty: every internal link, anchor and image resolves)."""
    html_dir = Path(html_dir).resolve()
    if not (html_dir / "index.html").is_file():
        return [f"{html_dir} has no index.html; build the book first"]
    # _static/ holds theme templates (Jinja, not pages); every rendered page lies outside it.
    pages = {p.resolve(): _parse(p) for p in html_dir.rglob("*.html")
             if p.relative_to(html_dir).parts[0] not in ("_static", "_sources")}
    problems = []
    for path, page in sorted(pages.items()):
        where = path.relative_to(html_dir)
        for tag, url in page.urls:
            parts = urlsplit(url)
            if parts.scheme or parts.netloc or url.startswith("//"):
                continue  # external: http(s), mailto, data, javascript
            target = path if not parts.path else (path.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                problems.append(f"{where}: <{tag}> points at missing {url}")
                continue
            if tag == "img" and target.stat().st_size == 0:
                problems.append(f"{where}: image {url} is empty")
            fragment = unquote(parts.fragment)
            if fragment and target.suffix == ".html" and target in pages and fragment not in pages[target].ids:
                problems.append(f"{where}: {url} names an anchor that {target.name} does not have")
    return problems


def main(argv: list[str]) -> int:
    folder = argv[1] if len(argv) > 1 else "_build/html"
    problems = check_html(folder)
    for p in problems:
        print(p)
    print(f"{len(problems)} problem(s) in {folder}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""Check a built book: every internal link, anchor and image in the HTML points at something that exists,
and the book is self-contained.

Sphinx's `-n` checks cross-references it knows about; this checks the rendered result, including
links written as plain Markdown, images of executed notebooks and the static assets. A page must
load nothing from outside the build (scripts, styles, fonts, images, MathJax), so the book reads
the same offline; links may point anywhere. A page must show no raw glue key (a ``{glue:...}``
role that found no value) and no error output of an executed cell.

    python book/_ext/check_html.py _build/html     # prints the problems, exit status 1 if any
"""
from __future__ import annotations

import re
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
        self.loads: list[tuple[str, str]] = []  # (tag, url) of what the browser fetches to show the page
        self.error_outputs = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        classes = (values.get("class") or "").split()
        if "output" in classes and ("stderr" in classes or "traceback" in classes):
            self.error_outputs += 1
        fetched = {"script": "src", "img": "src", "source": "src", "iframe": "src", "object": "data",
                   "embed": "src", "video": "src", "audio": "src"}.get(tag)
        if tag == "link" and set((values.get("rel") or "").lower().split()) & _FETCHED_RELS:
            fetched = "href"
        if fetched and values.get(fetched):
            self.loads.append((tag, values[fetched]))
        for name, value in attrs:
            if value is None:
                continue
            if name == "id" or (tag == "a" and name == "name"):
                self.ids.add(value)
            if (tag, name) in URL_ATTRS:
                self.urls.append((tag, value))


# <link rel=...> values whose target the browser fetches while showing the page.
_FETCHED_RELS = {"stylesheet", "icon", "preload", "modulepreload", "prefetch", "manifest",
                 "apple-touch-icon", "shortcut"}
# CSS that fetches: @import or url() with an absolute address.
_CSS_FETCH = re.compile(r"""(?:@import\s+|url\(\s*)['"]?((?:https?:)?//[^'")\s]+)""", re.I)
# A glue role whose key was not found is rendered as its source text.
_RAW_GLUE = re.compile(r"\{glue(?::\w+)?\}")


def _is_external(url: str) -> bool:
    parts = urlsplit(url)
    return bool(parts.netloc) or url.startswith("//") or parts.scheme in ("http", "https", "ftp")


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
    for css in sorted(html_dir.rglob("*.css")):
        for url in _CSS_FETCH.findall(css.read_text(encoding="utf-8", errors="replace")):
            problems.append(f"{css.relative_to(html_dir)}: loads {url} from outside the build")
    for path, page in sorted(pages.items()):
        where = path.relative_to(html_dir)
        for tag, url in page.loads:
            if _is_external(url):
                problems.append(f"{where}: <{tag}> loads {url} from outside the build")
        if page.error_outputs:
            problems.append(f"{where}: {page.error_outputs} error output(s) of executed cells")
        text = path.read_text(encoding="utf-8", errors="replace")
        if _RAW_GLUE.search(re.sub(r"<(script|pre|code)\b.*?</\1>", "", text, flags=re.S)):
            problems.append(f"{where}: shows a raw {{glue}} role (a glue key with no value)")
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

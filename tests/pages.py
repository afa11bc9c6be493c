"""What the book's prose says, read the way a reader reads it: code, maths and generated blocks left out.

Shared by the page tests (tests/test_pages.py); `python tests/pages.py` prints the decimal numbers
typed in each page's prose, so a writer sees which figures are still typed by hand.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_CODE_FENCE = re.compile(r"^(`{3,}|~{3,})(.*)$")
_GENERATED = re.compile(r"<!--\s*([\w-]+) start\s*-->.*?<!--\s*\1 end\s*-->", re.S)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_DISPLAY_MATH = re.compile(r"\$\$.*?\$\$|\\begin\{(\w+\*?)\}.*?\\end\{\1\}", re.S)
_INLINE_MATH = re.compile(r"(?<![\\$])\$(?!\s)[^$\n]+?(?<!\s)\$")
_INLINE_CODE = re.compile(r"(`+)[^`]*?\1")   # also every role's content: {glue:text}`key:.1f`, {cite}`x`
_LINK_TARGET = re.compile(r"\]\([^)]*\)|<https?://[^>]*>|https?://\S+")
DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+")


def prose(markdown: str) -> str:
    """`markdown` without code blocks, maths, inline code and roles, generated blocks, comments,
    front matter, directive options and link targets: the words a reader reads as text."""
    text = _GENERATED.sub(" ", markdown)
    text = _COMMENT.sub(" ", text)
    if text.startswith("---\n"):   # front matter (a MyST text notebook's kernel spec)
        end = text.find("\n---", 4)
        text = text[end + 4:] if end > 0 else text
    lines, fence = [], None
    for line in text.splitlines():
        stripped = line.strip()
        match = _CODE_FENCE.match(stripped)
        if fence is not None:
            if match and match.group(1)[0] == fence[0][0] and len(match.group(1)) >= len(fence[0]) \
                    and not match.group(2).strip():
                fence = None   # a code block or a directive ends
                continue
            if fence[1]:
                continue   # inside code or maths
            if re.match(r"^:[\w-]+:", stripped):
                continue   # a directive's option
            lines.append(line)
            continue
        if match:
            info = match.group(2).strip()
            is_code = not info.startswith("{") or re.match(r"\{(code-cell|code-block|code|math|sourcecode|literalinclude|glue:\w*|glue)\}", info)
            fence = (match.group(1), bool(is_code))
            continue
        lines.append(line)
    text = "\n".join(lines)
    text = _DISPLAY_MATH.sub(" ", text)
    text = _INLINE_CODE.sub(" ", text)
    text = _INLINE_MATH.sub(" ", text)
    return _LINK_TARGET.sub(" ", text)


def pages() -> dict[str, str]:
    """Every page a reader reads: README.md, book/*.md and the source notebooks' markdown cells."""
    out = {"README.md": (ROOT / "README.md").read_text(encoding="utf-8")}
    for path in sorted((ROOT / "book").glob("*.md")):
        out[str(path.relative_to(ROOT))] = path.read_text(encoding="utf-8")
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        out[str(path.relative_to(ROOT))] = "\n\n".join(
            "".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    return out


def decimals(markdown: str) -> list[str]:
    """The decimal numbers typed in `markdown`'s prose."""
    return DECIMAL.findall(prose(markdown))


def words(markdown: str) -> int:
    return len(re.findall(r"[A-Za-z][\w'-]*", prose(markdown)))


if __name__ == "__main__":
    total = 0
    for name, text in pages().items():
        found = decimals(text)
        total += len(found)
        print(f"{len(found):4d}  {words(text):6d} words  {name}  {' '.join(found[:40])}")
    print(f"{total:4d}  decimal numbers in the prose", file=sys.stderr)

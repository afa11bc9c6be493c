"""Open every page of a built book in headless Chromium, offline, and check what a reader sees.

`check_html.py` reads the HTML; this renders it: the equations are typeset by the MathJax copy in
the build, every image has loaded, and no glue key shows raw. Each page is opened from the disk
(``file://``), so nothing on the network can help it. Needs a Chromium binary (Debian's
``chromium``); without one it says so and exits with status 2.

    python book/_ext/check_browser.py _build/html      # one line per problem, exit status 1 if any
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# Runs in the page once it has loaded and MathJax (when the page has maths) has typeset it.
_PROBE = """
<script>
window.addEventListener("load", function () {
  var ready = (window.MathJax && MathJax.startup && MathJax.startup.promise) || Promise.resolve();
  ready.then(function () {
    var maths = Array.from(document.querySelectorAll(".math"));
    var report = {
      maths: maths.length,
      raw_maths: maths.filter(function (m) { return !m.querySelector("mjx-container"); }).length,
      mathjax: !!window.MathJax,
      images: document.images.length,
      broken_images: Array.from(document.images).filter(function (i) {
        return !(i.complete && i.naturalWidth > 0); }).map(function (i) { return i.getAttribute("src"); }),
      raw_glue: (document.body.innerText.match(/\\{glue(:\\w+)?\\}/g) || []).length
    };
    document.body.setAttribute("data-book-check", JSON.stringify(report));
  });
});
</script>
"""


def _chromium() -> str | None:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def check_page(browser: str, page: Path, profile: str) -> list[str]:
    """Problems a reader would see on `page` (a file of a built book)."""
    html = page.read_text(encoding="utf-8", errors="replace")
    probe = page.with_name(f".check-{page.name}")
    probe.write_text(html.replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    try:
        dom = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--allow-file-access-from-files",
             "--virtual-time-budget=15000", "--dump-dom", probe.as_uri()],
            capture_output=True, text=True, timeout=120).stdout
    finally:
        probe.unlink()
    found = re.search(r'data-book-check="([^"]*)"', dom)
    if not found:
        return ["the page did not finish loading (no report from the probe)"]
    report = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    problems = []
    if report["raw_maths"]:
        problems.append(f"{report['raw_maths']} of {report['maths']} equations not typeset"
                        + ("" if report["mathjax"] else " (MathJax did not load)"))
    problems += [f"image {src} did not load" for src in report["broken_images"]]
    if report["raw_glue"]:
        problems.append(f"{report['raw_glue']} raw glue role(s) shown")
    return problems


def main(argv: list[str]) -> int:
    folder = Path(argv[1] if len(argv) > 1 else "_build/html").resolve()
    browser = _chromium()
    if browser is None:
        print("check_browser: no Chromium found (install Debian's chromium, or set CHROMIUM)")
        return 2
    pages = sorted(p for p in folder.rglob("*.html")
                   if p.relative_to(folder).parts[0] not in ("_static", "_sources")
                   and p.name not in ("genindex.html", "search.html", "py-modindex.html")
                   and 'http-equiv="Refresh"' not in p.read_text(encoding="utf-8", errors="replace")[:500])
    count = 0
    with tempfile.TemporaryDirectory() as profile:
        for page in pages:
            for problem in check_page(browser, page, profile):
                print(f"{page.relative_to(folder)}: {problem}")
                count += 1
    print(f"{count} problem(s) in {len(pages)} page(s) of {folder}")
    return 1 if count else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""The book's public home, declared once (pyproject.toml, [project.urls] Repository), and its copies.

Colab opens a notebook without the rest of the repository, so the address has to be written into
each notebook (its "Open in Colab" link and its install cell) and into _config.yml (Jupyter Book
cannot read pyproject.toml). This stamps those copies from pyproject.toml:

    python book/_ext/repository_url.py           # rewrite the copies that differ (`make book` runs it)
    python book/_ext/repository_url.py --check   # list the copies that differ, exit status 1 if any

As a Sphinx extension (_config.yml, sphinx.local_extensions) it points the pages' launch buttons
at the source notebooks, notebooks/NN.ipynb, instead of the executed copies the pages show
(book/executed/ is a build product, not in the repository).
"""
from __future__ import annotations

import json
import re
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = "notebooks"
EXECUTED = "book/executed"
INSTALL_TAG = "djanet-install"
# The first line of each notebook: a plain text link, no badge image, so the book's pages load
# nothing from another site. A first line in the older badge form is replaced as well.
LINK_START = "[Open in Colab]("
_OLD_BADGE_START = "[![Open In Colab]("
_CONFIG_URL = re.compile(r"(?m)^(repository:\n(?:[ \t]+.*\n)*?[ \t]+url:[ \t]*).*$")
_CONFIG_BRANCH = re.compile(r"(?m)^repository:\n(?:[ \t]+.*\n)*?[ \t]+branch:[ \t]*(\S+)")


def repository_url(root: Path = ROOT) -> str:
    """The Repository entry of pyproject.toml's [project.urls] (a GitHub address)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    path = root / "pyproject.toml"
    urls = tomllib.loads(path.read_text())["project"].get("urls", {})
    url = urls.get("Repository", "").rstrip("/")
    if not url.startswith("https://github.com/") or url.count("/") != 4:
        raise ValueError(f"{path}: [project.urls] Repository = {url!r}; expected https://github.com/OWNER/NAME "
                         "(Colab opens notebooks from GitHub)")
    return url


def branch(root: Path = ROOT) -> str:
    """The branch the links open: repository.branch of _config.yml."""
    found = _CONFIG_BRANCH.search((root / "_config.yml").read_text())
    if not found:
        raise ValueError(f"{root / '_config.yml'} has no repository.branch")
    return found.group(1).strip("'\"")


def colab_url(url: str, branch: str, notebook: str) -> str:
    """Colab's address of `notebook` (a path in the repository) on `branch` of the GitHub repository `url`."""
    return f"https://colab.research.google.com/github/{url.removeprefix('https://github.com/')}/blob/{branch}/{notebook}"


def colab_link(url: str, branch: str, notebook: str) -> str:
    """The first line of `notebook`: a Markdown text link that opens it in Colab."""
    return f"{LINK_START}{colab_url(url, branch, notebook)})"


def install_cell(url: str, branch: str) -> str:
    """The first code cell of every notebook: installs djanet when the kernel lacks it, else nothing."""
    return f'''\
# Readies any kernel (Colab, a fresh JupyterLab): installs djanet when it is missing, else does nothing.
# DJANET_SOURCE overrides where from: a local checkout, or any address pip accepts.
import importlib, importlib.util, os, subprocess, sys

if importlib.util.find_spec("djanet") is None:
    source = os.environ.get("DJANET_SOURCE", "git+{url}@{branch}")
    if os.path.isdir(source):
        source = "file://" + os.path.abspath(source)
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"djanet[notebooks] @ {{source}}"],
                         capture_output=True, text=True)
    if pip.returncode:
        raise RuntimeError(f"pip could not install djanet from {{source}} (set DJANET_SOURCE to a checkout?)\\n"
                           + pip.stderr[-3000:])
    importlib.invalidate_caches()'''


def stamp_notebook(nb: dict, notebook: str, url: str, branch: str) -> dict:
    """`nb` with its Colab link (top of the first cell) and its install cell (the first code cell) up to date."""
    first = nb["cells"][0]
    lines = "".join(first["source"]).splitlines(keepends=True)
    if lines and lines[0].startswith((LINK_START, _OLD_BADGE_START)):
        lines = lines[1:]
    first["source"] = _source_lines(colab_link(url, branch, notebook) + "\n\n" + "".join(lines).lstrip("\n"))
    source = _source_lines(install_cell(url, branch))
    cells = [c for c in nb["cells"] if INSTALL_TAG in c.get("metadata", {}).get("tags", [])]
    if cells:
        cells[0]["source"] = source
    else:
        nb["cells"].insert(1, {"cell_type": "code", "execution_count": None,
                               "id": uuid.uuid4().hex[:8],
                               "metadata": {"tags": [INSTALL_TAG, "remove-cell"]},
                               "outputs": [], "source": source})
    return nb


def stamp(root: Path = ROOT, check: bool = False) -> list[str]:
    """The copies that differ from pyproject.toml's address; rewritten unless `check`."""
    url, br = repository_url(root), branch(root)
    stale = []
    for path in sorted((root / NOTEBOOKS).glob("*.ipynb")):
        text = path.read_text()
        notebook = path.relative_to(root).as_posix()
        new = json.dumps(stamp_notebook(json.loads(text), notebook, url, br), indent=1, ensure_ascii=False) + "\n"
        if new != text:
            stale.append(notebook)
            if not check:
                _write(path, new)
    config = root / "_config.yml"
    text = config.read_text()
    if not _CONFIG_URL.search(text):
        raise ValueError(f"{config} has no repository.url to stamp")
    new = _CONFIG_URL.sub(lambda m: m.group(1) + url, text)
    if new != text:
        stale.append("_config.yml")
        if not check:
            _write(config, new)
    return stale


def _source_lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


# ------------------------------------------------------------------------------------- Sphinx extension
def _launch_source_notebooks(app, pagename, templatename, context, doctree):  # noqa: ANN001
    """Launch buttons of an executed notebook's page open its source notebook instead."""
    if not pagename.startswith(EXECUTED + "/"):
        return
    executed = pagename + ".ipynb"
    source = f"{NOTEBOOKS}/{pagename.rsplit('/', 1)[-1]}.ipynb"
    for group in context.get("header_buttons", []):
        if group.get("label") == "launch-buttons":
            for button in group.get("buttons", []):
                if "url" in button:
                    button["url"] = button["url"].replace(executed, source)


def setup(app):  # noqa: ANN001 - the Sphinx application
    # sphinx-book-theme adds the launch buttons at priority 501; rewrite them after it.
    app.connect("html-page-context", _launch_source_notebooks, priority=502)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


def main(argv: list[str]) -> int:
    check = "--check" in argv[1:]
    stale = stamp(ROOT, check=check)
    url = repository_url(ROOT)
    if check:
        for name in stale:
            print(f"{name}: its copy of the repository address differs from pyproject.toml ({url}); "
                  "run `python book/_ext/repository_url.py`")
        return 1 if stale else 0
    print(f"repository {url}: " + (f"rewrote {', '.join(stale)}" if stale else "every copy up to date"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

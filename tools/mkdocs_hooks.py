"""MkDocs hook: publish repository files that the docs link to from outside docs/.

The pages in docs/ link to files elsewhere in the repository with ordinary relative
links, for example ``![chart](../bench/results/latest.png)`` in the generated
docs/benchmarks.md. Such a link works on a forge and in a local checkout, but MkDocs
only knows the files inside docs/, and ``mkdocs build --strict`` fails on it.

This hook finds every relative link in the pages that leads out of docs/ to a file
that exists inside the repository (never above it, never a Markdown file: a page
belongs in docs/), and adds that file to the site under ``repo/<its path>``. MkDocs then
resolves the link to it, rewrites the URL and copies the file, so the page shows the
image and the link keeps working. A link to a file that does not exist stays unknown,
and --strict still fails on it.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files, InclusionLevel

# The target of an inline Markdown link or image: ](target) or ](target "title").
_LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _outside_targets(page: Path, docs_dir: Path) -> set[str]:
    """Relative link targets in `page` that resolve outside `docs_dir`, as src URIs."""
    src_uri = page.relative_to(docs_dir).as_posix()
    found = set()
    for match in _LINK.finditer(page.read_text(encoding="utf-8")):
        target = match.group(1).split("#", 1)[0].split("?", 1)[0]
        if not target or "://" in target or target.startswith(("/", "mailto:")):
            continue
        uri = posixpath.normpath(posixpath.join(posixpath.dirname(src_uri), target))
        if uri.startswith("../"):
            found.add(uri)
    return found


def on_files(files: Files, config: Any) -> Files:
    """Add the repository files that pages link to from outside docs/."""
    docs_dir = Path(config["docs_dir"]).resolve()
    repo = Path(config["config_file_path"]).resolve().parent
    for page in sorted(docs_dir.rglob("*.md")):
        for uri in sorted(_outside_targets(page, docs_dir)):
            path = (docs_dir / uri).resolve()
            if uri.endswith(".md") or not path.is_file() or not path.is_relative_to(repo):
                continue
            if files.get_file_from_path(uri) is None:
                dest_uri = "repo/" + path.relative_to(repo).as_posix()
                # INCLUDED explicitly: the default exclusion of dot-files (".*")
                # would otherwise match the "../" of the path.
                site = config["site_dir"]
                inclusion = InclusionLevel.INCLUDED
                file = File(uri, str(docs_dir), site, False, dest_uri=dest_uri, inclusion=inclusion)
                files.append(file)
    return files

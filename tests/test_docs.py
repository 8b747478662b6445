"""The documentation is whole and self-contained: README links every document in docs/,
and nothing in the repository points at files outside it."""

from __future__ import annotations

import re
import subprocess

from tests.harness import ROOT

# Documents and paths of the machine the project was built on, not of the repository.
OUTSIDE = re.compile(r"\b(?:NAMES|DESIGN|SPEC|CONVENTIONS|FLOORS|DEVELOPERS)\.md\b"
                     r"|\.\./shared/|/work/(?:main|wt|shared|plan)\b")


def test_readme_links_every_document_in_docs():
    readme = (ROOT / "README.md").read_text()
    linked = set(re.findall(r"\]\((docs/[^)#\s]+\.md)", readme))
    docs = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}
    assert docs - linked == set(), f"README.md does not link {sorted(docs - linked)}"


def test_nothing_points_outside_the_repository():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    found = []
    for name in files:
        path = ROOT / name
        if name == "tests/test_docs.py" or not path.is_file():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        found += [f"{name}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}"
                  for m in OUTSIDE.finditer(text)]
    assert not found, "pointers outside the repository:\n" + "\n".join(found)

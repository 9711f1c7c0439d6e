"""The documentation shows the code the tests run, and the README's links lead somewhere.

Code on the pages of docs/ comes from the files in examples/, which tests/integration runs: a page
shows one with a ``literalinclude`` directive, never with a copy that could drift from it. The
rule checked here: every file in examples/ is included by some page, and no fenced ``python``
block on a page shares a run of four code lines with a file in examples/ (blank lines, comments,
imports and lines of brackets alone do not count). The README cannot include files, so a
``python`` block there that shares such a run with an example must be an exact excerpt of it.
The strict Sphinx build (``.ci/run``) checks every link and reference between the pages.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support import ROOT

import humanloop_logging

DOCS = ROOT / "docs"
EXAMPLES = ROOT / "examples"

#: Consecutive code lines a page's block may share with an example before it counts as a copy.
RUN = 4

FENCE = re.compile(
    r"^(?P<indent> *)```(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```", re.M | re.S
)
INCLUDE = re.compile(r"^ *```\{literalinclude\} +(?P<path>\S+)", re.M)
LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


def pages() -> list[Path]:
    return sorted(path for path in DOCS.rglob("*.md") if "_build" not in path.parts)


def example_files() -> list[Path]:
    return sorted(
        path for path in EXAMPLES.rglob("*") if path.is_file() and "__pycache__" not in path.parts
    )


def python_blocks(text: str) -> list[str]:
    """The bodies of a Markdown text's fenced ``python`` blocks, dedented."""
    blocks = []
    for match in FENCE.finditer(text):
        if match.group("info").strip() == "python":
            indent = len(match.group("indent"))
            blocks.append("".join(line[indent:] for line in match.group("body").splitlines(True)))
    return blocks


def code_lines(text: str) -> list[str]:
    """The lines that say something: stripped, without comments, imports or brackets alone."""
    lines = []
    for line in text.splitlines():
        code = re.sub(r"\s+#.*$", "", line).strip()
        if not code or code.startswith(("#", "import ", "from ")) or not code.strip("()[]{},"):
            continue
        lines.append(code)
    return lines


def runs(lines: list[str]) -> set[tuple[str, ...]]:
    return {tuple(lines[i : i + RUN]) for i in range(len(lines) - RUN + 1)}


def shared_run(block: str) -> str:
    """The first example file that shares a run of ``RUN`` code lines with ``block``, or ''."""
    mine = runs(code_lines(block))
    for path in EXAMPLES.glob("*.py"):
        if mine & runs(code_lines(path.read_text(encoding="utf-8"))):
            return path.name
    return ""


def slug(heading: str) -> str:
    """A heading's anchor as MyST (``myst_heading_anchors``) and GitHub make it."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6} +(.+)$", text, re.M)}


@pytest.mark.parametrize("example", example_files(), ids=lambda path: path.name)
def test_every_example_is_included_by_a_page(example: Path) -> None:
    """Each file in examples/ (pipelines/ too) is the target of a page's literalinclude."""
    included = {
        (page.parent / match.group("path")).resolve()
        for page in pages()
        for match in INCLUDE.finditer(page.read_text(encoding="utf-8"))
    }
    assert example.resolve() in included, f"no page of docs/ includes {example.relative_to(ROOT)}"


def test_every_literalinclude_names_an_existing_file() -> None:
    """No page includes a file that is gone (the build would only warn once per page)."""
    for page in pages():
        for match in INCLUDE.finditer(page.read_text(encoding="utf-8")):
            assert (page.parent / match.group("path")).is_file(), (page.name, match.group("path"))


@pytest.mark.parametrize("page", pages(), ids=lambda path: str(path.relative_to(DOCS)))
def test_no_page_copies_example_code(page: Path) -> None:
    """A page's python blocks share no run of code lines with an example: it includes it."""
    for block in python_blocks(page.read_text(encoding="utf-8")):
        copied = shared_run(block)
        assert not copied, (
            f"{page.relative_to(ROOT)} copies code of examples/{copied}: show it with a "
            f"literalinclude instead:\n{block}"
        )


def test_the_readme_quotes_examples_exactly() -> None:
    """A python block of the README that shares code with an example is an exact excerpt of it."""
    examples = [path.read_text(encoding="utf-8") for path in EXAMPLES.glob("*.py")]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = python_blocks(readme)
    assert blocks
    for block in blocks:
        if shared_run(block):
            assert any(block in example for example in examples), (
                f"README.md's block differs from examples/{shared_run(block)}:\n{block}"
            )


def test_the_readmes_links_lead_somewhere() -> None:
    """Every relative link of the README names a file of the repository, and a heading of it."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = [m.group("target") for m in LINK.finditer(readme)]
    local = [t for t in targets if not re.match(r"[a-z]+:", t)]
    assert local
    for target in local:
        path, _, anchor = target.partition("#")
        assert (ROOT / path).exists(), target
        if anchor:
            assert anchor in anchors(ROOT / path), target


def test_the_api_reference_documents_every_public_name() -> None:
    """docs/api.md has an entry for each name of ``humanloop_logging.__all__``."""
    page = (DOCS / "api.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\.\. [\w:]+:: (?:humanloop_logging\.)?(\w+)", page, re.M))
    missing = sorted(set(humanloop_logging.__all__) - documented)
    assert not missing, f"docs/api.md documents none of {missing}"

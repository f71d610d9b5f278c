"""The documentation: every relative link of README.md and docs/*.md resolves (files and #anchors), the
README stays a short user's guide, and nothing outside tests/ and bench/ points at ../shared/docs."""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MARKDOWN = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_BYTES = 16_000

# [text](target) and ![alt](target); a target ends at whitespace or the closing parenthesis.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.DOTALL | re.MULTILINE)
INLINE_CODE = re.compile(r"`[^`\n]*`")
# "docs/protocol.md §3.3, §3.4" or "docs/protocol.md §3.3-§3.5": every section after the path.
CITATION = re.compile(r"docs/protocol\.md (§[\d.]+(?:(?:, |-)§[\d.]*\d)*)")


def prose(text: str) -> str:
    """The text outside fenced code blocks, indented code blocks and inline code."""
    text = FENCE.sub("", text)
    text = "\n".join(line for line in text.splitlines() if not line.startswith("    "))
    return INLINE_CODE.sub("", text)


def links(text: str) -> list[str]:
    return LINK.findall(prose(text))


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation removed (except - and _), spaces to -."""
    heading = INLINE_CODE.sub(lambda m: m.group(0)[1:-1], heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", heading).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    headings = re.findall(r"^#{1,6} (.+)$", FENCE.sub("", path.read_text(encoding="utf-8")), re.MULTILINE)
    found, seen = set(), {}
    for heading in headings:
        base = anchor(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def test_links_and_anchor_helpers():
    text = "See [a](docs/a.md), ![i](img/x.png) and `[no](a link)`.\n```\n[no](code.md)\n```\n    [no](x)\n"
    assert links(text) == ["docs/a.md", "img/x.png"]
    assert anchor('3.3 Policy "during inference" (run-time crop, one merge per full image)') == (
        "33-policy-during-inference-run-time-crop-one-merge-per-full-image"
    )
    assert anchor("The `truncated` option") == "the-truncated-option"


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    broken = []
    for target in links(path.read_text(encoding="utf-8")):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, fragment = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target}: no file {linked}")
        elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
            broken.append(f"{target}: no heading #{fragment} in {linked.name}")
    assert not broken, f"{path.name}: " + "; ".join(broken)


def test_the_docs_exist():
    expected = {"protocol.md", "tiling.md", "experiments.md", "performance.md", "build.md", "training.md"}
    assert expected <= {p.name for p in MARKDOWN}


def test_readme_is_a_short_guide():
    size = (ROOT / "README.md").stat().st_size
    assert size < README_MAX_BYTES, f"README.md has {size} bytes; move details into docs/"


def test_protocol_sections_cited_in_the_code_exist():
    protocol = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    sections = set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", protocol, re.MULTILINE))
    cited = set()
    for path in tracked_files():
        if path.suffix in {".py", ".cpp", ".h", ".cu", ".toml", ".md"}:
            for citation in CITATION.findall(path.read_text(encoding="utf-8")):
                cited |= set(re.findall(r"§(\d+(?:\.\d+)?)", citation))
    assert cited, "no code cites docs/protocol.md"
    assert cited <= sections, f"cited sections missing from docs/protocol.md: {sorted(cited - sections)}"


def tracked_files() -> list[Path]:
    """The repository's files: git's tracked and untracked-but-not-ignored files, or a walk without git."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        files = [ROOT / name for name in listed]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "build", "runs", "__pycache__"}
        files = [p for p in ROOT.rglob("*") if not skip & set(p.relative_to(ROOT).parts)]
    return [p for p in files if p.is_file()]


def test_nothing_outside_tests_and_bench_depends_on_shared_docs():
    offenders = []
    for path in tracked_files():
        if path.relative_to(ROOT).parts[0] in {"tests", "bench", ".git"}:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:  # binary files (images)
            continue
        if "shared/docs" in text:
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"files referring to ../shared/docs: {offenders}"

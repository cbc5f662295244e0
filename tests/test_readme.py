"""README's measured figures have a source: a committed benchmark output (bench/results/) or the
test whose asserted bound they state. A block (paragraph, list item or table) that reports a
measurement names its source, and a table quoted from a benchmark is quoted row for row."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

# What makes a block a measurement: it says so, or gives percentiles, and it has a figure.
MEASURED = re.compile(r"\b(?:[Mm]easured|p50|p95|p99)\b")
FIGURE = re.compile(r"\d(?:\.\d+)? ?(?:ms|s|MB|GB|%)\b")
BENCH_SOURCE = re.compile(r"bench/results/([\w-]+)\.(?:md|json|png|\{json,md,png\})")
TEST_SOURCE = re.compile(r"tests/[\w/]+\.py")


def blocks(text: str) -> list[tuple[int, str]]:
    """(first line number, text) of README's blocks outside code fences: paragraphs, list items and
    tables, a table together with the paragraph before it (where its source is named)."""
    found: list[tuple[int, str]] = []
    current: list[str] = []
    start, fenced = 0, False
    for number, line in enumerate(text.splitlines() + [""], 1):
        if line.startswith("```"):
            fenced = not fenced
            line = ""
        elif fenced:
            continue
        if current and (not line.strip() or line.startswith(("- ", "#"))):
            found.append((start, "\n".join(current)))
            current = []
        if line.strip():
            start = start if current else number
            current.append(line)
    merged: list[tuple[int, str]] = []
    for start, block in found:
        if block.startswith("|") and merged and not merged[-1][1].startswith(("|", "#")):
            merged[-1] = (merged[-1][0], merged[-1][1] + "\n" + block)
        else:
            merged.append((start, block))
    return merged


def committed(path: str) -> bool:
    return subprocess.run(["git", "ls-files", "--error-unmatch", path], cwd=ROOT, capture_output=True).returncode == 0


def test_every_measurement_in_the_readme_names_a_committed_source():
    unsourced, missing = [], []
    for line, block in blocks(README.read_text()):
        if not (MEASURED.search(block) and FIGURE.search(block)) or block.startswith("#"):
            continue
        names = [f"bench/results/{name}.md" for name in BENCH_SOURCE.findall(block)] + TEST_SOURCE.findall(block)
        if not names:
            unsourced.append(f"README.md:{line}: {block[:100]!r}")
        missing += [f"README.md:{line}: {name}" for name in names if not committed(name)]
    assert not unsourced, "measurements without a source:\n" + "\n".join(unsourced)
    assert not missing, "sources not in git:\n" + "\n".join(missing)


def test_a_table_quoted_from_a_benchmark_is_its_rows_verbatim():
    wrong = []
    for line, block in blocks(README.read_text()):
        rows = [row for row in block.splitlines() if row.startswith("|") and not row.startswith("|---")]
        sources = [ROOT / f"bench/results/{name}.md" for name in BENCH_SOURCE.findall(block)]
        if len(rows) < 2 or not sources or not all(source.exists() for source in sources):
            continue
        quoted = "\n".join(source.read_text() for source in sources)
        wrong += [f"README.md:{line}: {row[:100]}" for row in rows if row not in quoted]
    assert not wrong, "table rows not in the benchmark output the table names:\n" + "\n".join(wrong)

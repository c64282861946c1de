"""Scale benchmark for ``app.review.diff``: a 3,000-file, 20,000-changed-line pull request.

Run it as ``.venv/bin/python bench/diff_scale.py``; ``run()`` returns the figures for
``bench/review.py``. The same synthetic change is built twice, as GitHub "list pull request files"
entries and as one unified diff text, and each is parsed, sliced and mapped (then probed with a few
thousand line-map lookups). Targets (DESIGN.md): under 1 s and under 200 MB; prompt tokens over the
diff's own tokens under 1.25. Wall time is the median of several runs without ``tracemalloc``;
peak memory comes from a separate run under ``tracemalloc``, because tracing slows Python down
several times. The RSS figure is the growth of the process's peak resident size over the whole
measurement, after the inputs were built.
"""

from __future__ import annotations

import gc
import random
import resource
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.review.diff import (
    FileDiff,
    LineMap,
    SliceResult,
    parse_github_files,
    parse_unified_diff,
    slice_diff,
)

FILES = 3_000
CHANGED_LINES = 20_000
TOKEN_BUDGET = 12_000
LOOKUPS = 5_000
RUNS = 5

_WORDS = [
    "value",
    "result",
    "request",
    "response",
    "config",
    "client",
    "session",
    "token",
    "handler",
    "payload",
    "item",
    "index",
    "count",
    "total",
    "limit",
    "offset",
    "buffer",
    "reader",
    "writer",
    "status",
    "error",
    "retry",
    "timeout",
    "cache",
    "store",
]


def _code_line(rng: random.Random) -> str:
    indent = " " * (4 * rng.randint(0, 3))
    a, b, c = rng.choice(_WORDS), rng.choice(_WORDS), rng.choice(_WORDS)
    shape = rng.randrange(4)
    if shape == 0:
        return f"{indent}{a}_{b} = {c}.get_{a}({b}, default=None)"
    if shape == 1:
        return f"{indent}if {a} is not None and {b}.{c} > {rng.randint(0, 999)}:"
    if shape == 2:
        return f"{indent}return self._{a}({b}=({c} or {rng.randint(1, 99)}))"
    return f'{indent}logger.debug("{a} {b}: %s", {c})'


def _file_patch(rng: random.Random, changed: int) -> tuple[str, int, int]:
    """Hunks for one file with ``changed`` added+removed lines, three lines of context around
    each hunk, as GitHub's ``patch`` field has them."""
    out: list[str] = []
    old_line = new_line = rng.randint(1, 40)
    added = removed = 0
    left = changed
    while left:
        size = min(left, rng.choice((1, 2, 3, 5, 8, 12, 20, 40)))
        left -= size
        before = [_code_line(rng) for _ in range(3)]
        after = [_code_line(rng) for _ in range(3)]
        body: list[str] = []
        h_added = h_removed = 0
        for _ in range(size):
            if rng.random() < 0.3:
                body.append("-" + _code_line(rng))
                h_removed += 1
            else:
                body.append("+" + _code_line(rng))
                h_added += 1
        header = (
            f"@@ -{old_line},{6 + h_removed} +{new_line},{6 + h_added} @@ "
            f"def {rng.choice(_WORDS)}_{rng.choice(_WORDS)}(self):"
        )
        out.append(header)
        out.extend(" " + line for line in before)
        out.extend(body)
        out.extend(" " + line for line in after)
        old_line += 6 + h_removed + rng.randint(5, 60)
        new_line += 6 + h_added + rng.randint(5, 60)
        added += h_added
        removed += h_removed
    return "\n".join(out), added, removed


def synthetic_pr(
    seed: int = 20_000, files: int = FILES, changed_lines: int = CHANGED_LINES
) -> tuple[list[dict[str, Any]], str]:
    """The same change as ``pulls/list-files`` entries and as one ``git diff`` text.

    Sizes are skewed like real pull requests: most files change a few lines, one changes
    thousands (a hunk larger than the budget, so the line-chunking path runs too). A few files
    are lock files, binary, deleted or renamed, so the skip paths run as well.
    """
    rng = random.Random(seed)
    sizes = [1] * files
    sizes[0] = 2_500
    for _ in range(changed_lines - sum(sizes)):
        sizes[int(files * rng.random() ** 3)] += 1
    for i in range(11, files, 600):  # binary files: GitHub counts no lines for them
        sizes[0] += sizes[i]
        sizes[i] = 0
    entries: list[dict[str, Any]] = []
    chunks: list[str] = []
    for i, size in enumerate(sizes):
        path = f"src/pkg{i % 40}/mod{i // 40}/file_{i}.py"
        if i % 500 == 7:
            path = f"pkg{i}/poetry.lock"
        entry: dict[str, Any] = {"filename": path, "sha": f"{i:040x}", "status": "modified"}
        if i % 600 == 11:  # binary: no patch
            entry.update(additions=0, deletions=0, changes=0)
            entries.append(entry)
            chunks.append(
                f"diff --git a/{path} b/{path}\nindex 1111111..2222222 100644\n"
                f"Binary files a/{path} and b/{path} differ\n"
            )
            continue
        patch, added, removed = _file_patch(rng, size)
        old = path
        if i % 300 == 5:
            old = path.replace("file_", "old_file_")
            entry.update(status="renamed", previous_filename=old)
        entry.update(additions=added, deletions=removed, changes=added + removed, patch=patch)
        entries.append(entry)
        header = f"diff --git a/{old} b/{path}\n"
        if old != path:
            header += f"similarity index 90%\nrename from {old}\nrename to {path}\n"
        header += f"index 1111111..2222222 100644\n--- a/{old}\n+++ b/{path}\n"
        chunks.append(header + patch + "\n")
    return entries, "".join(chunks)


def _pipeline(parse: Callable[[], list[FileDiff]]) -> tuple[list[FileDiff], SliceResult, LineMap]:
    files = parse()
    result = slice_diff(files, token_budget=TOKEN_BUDGET, risk_order=_risk)
    line_map = LineMap(files)
    return files, result, line_map


def _risk(path: str) -> int:
    return 0 if "/pkg3/" in path else 1


def _probe(files: list[FileDiff], line_map: LineMap, rng: random.Random) -> int:
    paths = [f.path for f in files]
    hits = 0
    for _ in range(LOOKUPS):
        path = rng.choice(paths)
        line = rng.randint(1, 2_000)
        hits += line_map.is_commentable(path, line)
        hits += line_map.commentable_range(path, line, line + rng.randint(0, 5))
    return hits


def _measure(name: str, parse: Callable[[], list[FileDiff]]) -> dict[str, float]:
    times: list[float] = []
    result: SliceResult | None = None
    for run_no in range(RUNS):
        gc.collect()
        rng = random.Random(run_no)
        start = time.perf_counter()
        files, result, line_map = _pipeline(parse)
        _probe(files, line_map, rng)
        times.append(time.perf_counter() - start)
        del files, line_map
    assert result is not None
    gc.collect()
    tracemalloc.start()
    kept = _pipeline(parse)
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del kept
    return {
        f"{name}_seconds_median": statistics.median(times),
        f"{name}_seconds_max": max(times),
        f"{name}_peak_mb": peak / 2**20,
        f"{name}_slices": float(len(result.slices)),
        f"{name}_not_reviewed": float(len(result.not_reviewed)),
        f"{name}_prompt_tokens": float(result.prompt_tokens),
        f"{name}_diff_tokens": float(result.diff_tokens),
        f"{name}_prompt_over_diff": result.prompt_tokens / max(result.diff_tokens, 1),
    }


def run() -> dict[str, float]:
    """Build the synthetic pull request, measure both input formats, return the figures."""
    entries, diff_text = synthetic_pr()
    gc.collect()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    figures: dict[str, float] = {
        "files": float(len(entries)),
        "changed_lines": float(sum(e.get("changes", 0) for e in entries)),
        "diff_mb": len(diff_text.encode()) / 2**20,
        "token_budget": float(TOKEN_BUDGET),
    }
    figures |= _measure("files_api", lambda: parse_github_files(entries))
    figures |= _measure("unified_diff", lambda: parse_unified_diff(diff_text))
    small = slice_diff(parse_github_files(entries), token_budget=2_000)
    figures["prompt_over_diff_at_2000_token_budget"] = small.prompt_tokens / small.diff_tokens
    figures["slices_at_2000_token_budget"] = float(len(small.slices))
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
    figures["rss_peak_growth_mb"] = (rss_after - rss_before) * scale / 2**20
    return figures


def main() -> None:
    figures = run()
    width = max(map(len, figures))
    for key, value in figures.items():
        print(f"{key:<{width}}  {value:,.3f}")
    worst_seconds = max(figures["files_api_seconds_median"], figures["unified_diff_seconds_median"])
    worst_mb = max(figures["files_api_peak_mb"], figures["unified_diff_peak_mb"])
    worst_ratio = max(
        figures["files_api_prompt_over_diff"], figures["unified_diff_prompt_over_diff"]
    )
    print(f"target  parse+slice+map < 1 s : {worst_seconds:.3f} s")
    print(f"target  peak memory < 200 MB  : {worst_mb:.1f} MB (tracemalloc)")
    print(f"target  prompt/diff < 1.25    : {worst_ratio:.3f}")


if __name__ == "__main__":
    main()

"""A deterministic token estimate that needs no tokenizer.

The reviewers run through two providers whose tokenizers differ and cannot be downloaded at run
time, and budgets only need to be safe, not exact. So the estimate is a rule of thumb tuned to err
on the high side for source code:

* ASCII text counts one token per 3.5 characters, rounded up (source code averages about 3-4
  characters per token for both Claude and GPT tokenizers);
* every non-ASCII character counts as one whole token, because CJK text, emoji and accented letters
  are split into one or more tokens per character by byte-level BPE tokenizers.

The rule is subadditive (``estimate(a + b) <= estimate(a) + estimate(b)``), which lets the slicer
pack pieces by adding their estimates and still be sure the joined text stays within budget.
"""

from __future__ import annotations

__all__ = ["CHARS_PER_TOKEN", "estimate_tokens"]

CHARS_PER_TOKEN = 3.5


def estimate_tokens(text: str) -> int:
    """``ceil(ascii_chars / 3.5) + non_ascii_chars``; two C-speed passes at most, no allocation
    for pure-ASCII text (the common case for diffs)."""
    if text.isascii():
        # ceil(n / 3.5) == ceil(2n / 7), in integers to stay deterministic across platforms.
        return (2 * len(text) + 6) // 7
    ascii_chars = len(text.encode("ascii", "ignore"))
    return (2 * ascii_chars + 6) // 7 + (len(text) - ascii_chars)

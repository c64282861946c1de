"""``review-diff``'s options, help and exit codes, apart from the review itself.

Building the command line's parser must not import the review pipeline and the model SDKs
(seconds of imports): every other command would pay for them.
"""

from __future__ import annotations

import argparse
from typing import Any

HELP = """\
Review a patch with both models, as the App would; nothing is posted.

The current repository's .github/aigateway.yml applies (or --config FILE), and its
.gitattributes marks generated files. Spend is held to the config's budgets and recorded
in the ledger under --repo (see: quota) unless --no-ledger.

exit codes:
  0  reviewed, or --dry-run, or nothing reviewable
  1  no model answered
  2  bad input or settings
  3  partial: some model calls failed
  4  refused before any call: --max-cost or a budget
"""

EXIT_OK = 0
EXIT_NO_ANSWER = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_REFUSED = 4


def add_parser(sub: Any) -> None:
    """The sub-command's options (kept here so ``__main__`` holds one line for it)."""
    rd = sub.add_parser(
        "review-diff",
        help="review a local patch with both models; posts nothing",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rd.add_argument(
        "patch", help="a unified diff (git diff, git format-patch, diff -ruN); - reads stdin"
    )
    rd.add_argument(
        "--config",
        default=None,
        help="a .github/aigateway.yml to apply (default: the current repository's, if any)",
    )
    rd.add_argument(
        "--title", default=None, help="the change's title (default: a format-patch Subject)"
    )
    rd.add_argument(
        "-p",
        dest="strip",
        type=int,
        default=None,
        metavar="N",
        help="strip N leading path components from file names, as patch -p does",
    )
    rd.add_argument(
        "--dry-run",
        action="store_true",
        help="call no model: list files, skipped files, risk, slices, tokens and estimated cost",
    )
    rd.add_argument(
        "--max-cost",
        type=float,
        default=None,
        metavar="USD",
        help="refuse before the first call when the estimated cost is above USD",
    )
    rd.add_argument(
        "--repo",
        default="local",
        help="the repository name the spend is recorded and budgeted under (default: local)",
    )
    rd.add_argument("--no-ledger", action="store_true", help="record no spend and open no database")
    out = rd.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the result as JSON")
    out.add_argument("--markdown", action="store_true", help="print the result as Markdown")
    rd.add_argument(
        "--all", action="store_true", help="list every finding and risk row (default: 50 each)"
    )

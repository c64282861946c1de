"""Text that every database column can hold, whatever a payload or an error put in it.

A signed payload can carry any JSON string: a NUL (``\\u0000``), which PostgreSQL's ``text``
refuses, or a lone surrogate (``\\ud800``), which no UTF-8 encoder writes, SQLite's included.
Either one in a single row fails the whole statement, and with it every delivery of the batch
or the update that records a handler's error. So text that comes from outside (a payload's
``action`` or repository name, an exception's message that quotes them) goes through
``storable`` before it is written: such characters become U+FFFD, the replacement character,
and everything else is kept as it is. Kept free of imports, for the intake process.
"""

from __future__ import annotations

import re

REPLACEMENT = "\ufffd"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> str:
    """``text`` with every NUL and lone surrogate replaced by U+FFFD."""
    return _UNSTORABLE.sub(REPLACEMENT, text)

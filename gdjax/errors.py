"""The one exception for bad input: a flag, a name, a number or a file that cannot be used.

Library functions raise :class:`InputError` (a ``ValueError``) with one line that names the
problem — the key, layer, shape or value — before they write anything, so a caller can show
that line and stop, and the corrected call then runs on the untouched output directory. The
example scripts print it as ``error: <message>`` and exit with status 2, without a traceback.
"""

from __future__ import annotations

__all__ = ["InputError"]


class InputError(ValueError):
    """Bad input from the user; ``str(e)`` is one line naming the problem."""

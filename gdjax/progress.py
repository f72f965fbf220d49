"""A dependency-free progress bar for long loops: count, rate and ETA on one stderr line.

    for batch in progress.bar(batches, "segmenting"):
        ...

On a terminal the line is rewritten in place with ``\\r``; when stderr is not a TTY (logs, CI)
it prints a plain line at most every ``every`` seconds and once at the end.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def _fmt_time(seconds: float) -> str:
    seconds = int(round(seconds))
    m, s = divmod(seconds, 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def bar(
    items: Iterable[T],
    desc: str = "",
    total: int | None = None,
    every: float = 10.0,
    stream=None,
    disable: bool = False,
) -> Iterator[T]:
    """Yield ``items`` while showing ``desc  i/total  rate it/s  elapsed<ETA`` on ``stream``."""
    if disable:
        yield from items
        return
    stream = sys.stderr if stream is None else stream
    if total is None and hasattr(items, "__len__"):
        total = len(items)
    tty = bool(getattr(stream, "isatty", lambda: False)())
    start = last = time.perf_counter()
    i = 0

    def show(final: bool):
        elapsed = time.perf_counter() - start
        rate = i / elapsed if elapsed > 0 else 0.0
        count = f"{i}/{total}" if total else f"{i}"
        eta = ""
        if total and rate > 0 and not final:
            eta = f"<{_fmt_time((total - i) / rate)}"
        line = f"{desc}  {count}  {rate:.2f} it/s  {_fmt_time(elapsed)}{eta}"
        if tty:
            stream.write("\r" + line + ("\n" if final else "\x1b[K"))
        else:
            stream.write(line + "\n")
        stream.flush()

    for item in items:
        yield item
        i += 1
        now = time.perf_counter()
        if (tty and now - last >= 0.2) or (not tty and now - last >= every):
            last = now
            if not (total and i >= total):
                show(False)
    show(True)

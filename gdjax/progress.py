"""Progress of long loops and steps, on stderr: one line per pass, safe across threads.

    for batch in progress.bar(batches, "segmenting", warmup=True):
        ...
    with progress.status("compiling the statistics programs"):
        ...

On a terminal every active bar or status has its own row in one live area drawn by `rich`
(one per console for the whole process, so bars of different threads never overwrite each
other); when one ends, its row is replaced by a single final line printed above the area,
which stays in the scrollback::

    generate+segment seed 1  40/40  done in 12.3 s  first 1.5 s, then 3.40 it/s
    compiling the statistics programs  done in 4.1 s
    ablating layer4  12/40  interrupted after 5.0 s  2.40 it/s

Anywhere else (logs, pipes, CI) the same lines are written plainly, without control characters:
a progress line at most every ``every`` seconds and the final line. ``GDJAX_PROGRESS=0`` in the
environment silences all of it.

A loop left early (an exception, ``KeyboardInterrupt``, ``break``, a closed generator) ends its
bar as ``interrupted``; the live area is taken down when its last row ends, or at exit, so the
cursor is visible again and the next output starts on a fresh line.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import Progress, ProgressColumn, SpinnerColumn, TextColumn
from rich.progress_bar import ProgressBar
from rich.table import Column
from rich.text import Text

T = TypeVar("T")

_now = time.perf_counter  # one indirection, so tests can drive the clock
_lock = threading.RLock()  # guards _displays and every write, plain or live
_displays: dict = {}  # key of a console -> _Display drawing there
_stderr_console: Console | None = None


def _clock(seconds: float) -> str:
    """``m:ss`` or ``h:mm:ss``, for times that tick on screen."""
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _duration(seconds: float) -> str:
    """``1.2 s``, ``2m03s`` or ``1h02m03s``, for final lines."""
    if seconds < 59.95:
        return f"{seconds:.1f} s"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def _rate(rate: float) -> str:
    if rate < 1:
        return f"{1 / rate:.2f} s/it"
    return f"{rate:.{2 if rate < 10 else 1 if rate < 100 else 0}f} it/s"


class _Line:
    """What one bar (or one ``status``) has done, and the text that shows it."""

    def __init__(self, desc: str, total: int | None, warmup: bool, is_status: bool = False):
        self.desc, self.total, self.warmup, self.is_status = desc, total, warmup, is_status
        self.n = 0
        self.start = self.last = _now()
        self.first: float | None = None  # when the first item completed
        self.closed = False

    def advance(self) -> None:
        self.last = _now()
        if self.n == 0:
            self.first = self.last
        self.n += 1

    def rate(self) -> float | None:
        """Items per second; with ``warmup`` over the items after the first (which compiles)."""
        n, since = (self.n - 1, self.first) if self.warmup else (self.n, self.start)
        if n < 1 or since is None or self.last <= since:
            return None
        return n / (self.last - since)

    def count(self) -> str:
        return f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"

    def info(self) -> str:
        """``12/40  3.40 it/s  0:12  ETA 0:30`` (or ``0/40  compiling…  0:01``), live."""
        now = _now()
        if self.is_status:
            return _clock(now - self.start)
        parts = [self.count()]
        rate = self.rate()
        if self.warmup and self.n == 0:
            parts.append("compiling…")
        elif rate:
            parts.append(_rate(rate))
        parts.append(_clock(now - self.start))
        if rate and self.total is not None and self.n < self.total:
            parts.append(
                f"ETA {_clock(max(0.0, (self.total - self.n) / rate - (now - self.last)))}"
            )
        return "  ".join(parts)

    def final(self, done: bool) -> str:
        """The one line that stays: ``desc  40/40  done in 12.3 s  3.40 it/s``."""
        elapsed = _now() - self.start
        word = (
            f"done in {_duration(elapsed)}" if done else f"interrupted after {_duration(elapsed)}"
        )
        parts = [self.desc] if self.desc else []
        if self.is_status:
            return "  ".join([*parts, word])
        parts += [self.count(), word]
        rate = self.rate()
        if self.warmup and self.first is not None and rate:
            parts.append(f"first {_duration(self.first - self.start)}, then {_rate(rate)}")
        elif rate:
            parts.append(_rate(rate))
        return "  ".join(parts)


class _InfoColumn(ProgressColumn):
    def render(self, task) -> Text:
        return Text(task.fields["line"].info(), no_wrap=True, overflow="ellipsis")


class _BarColumn(ProgressColumn):
    def render(self, task):
        line = task.fields["line"]
        if line.is_status:
            return Text("")
        waiting = line.total is None or (line.warmup and line.n == 0)
        total = None if waiting else max(line.total, 1)
        return ProgressBar(total, line.n, width=24, pulse=waiting, animation_time=task.get_time())


class _Display:
    """The live area of one console: one rich ``Progress`` whose rows are the active lines."""

    def __init__(self, key, console: Console):
        self.key, self.console, self.rows = key, console, {}
        desc = Column(no_wrap=True, overflow="ellipsis")
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}", markup=False, table_column=desc),
            _BarColumn(),
            _InfoColumn(table_column=Column(no_wrap=True)),
            console=console,
            transient=True,  # rows vanish; the final lines are printed above the area instead
            refresh_per_second=8,
            # Other output to the same terminal goes above the area rather than through it;
            # stdout only when it is that terminal too (not `> file`).
            redirect_stderr=key == "stderr",
            redirect_stdout=key == "stderr" and _isatty(sys.stdout),
        )
        self.progress.start()

    def add(self, line: _Line) -> None:
        self.rows[line] = self.progress.add_task(line.desc, line=line)
        self.progress.refresh()  # shown at once, not at the next tick

    def end(self, line: _Line, done: bool) -> None:
        self.progress.remove_task(self.rows.pop(line))
        text = Text(line.final(done), style=None if done else "yellow")
        if self.rows:
            self.progress.refresh()  # else the print below redraws the area with the row still in
        else:
            self.progress.stop()  # erases the area, shows the cursor; the line goes where it was
            del _displays[self.key]
        self.console.print(text, markup=False, highlight=False, emoji=False)


def _isatty(stream) -> bool:
    stream = getattr(stream, "rich_proxied_file", stream)
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _live_console(key, make) -> Console | None:
    """The console of ``key``'s live area (made by ``make()`` if new), or None: not a terminal."""
    if key in _displays:
        return _displays[key].console
    console = make()
    return console if console.is_terminal and not console.is_dumb_terminal else None


def _open(line: _Line, stream, every: float):
    """Starts showing ``line`` on ``stream``; returns ``(tick, end)``: call ``tick()`` after each
    item and ``end(done)`` once."""
    global _stderr_console
    with _lock:
        if isinstance(stream, Console):
            key, console = id(stream), stream
            if not (console.is_terminal and not console.is_dumb_terminal):
                console, stream = None, stream.file
        elif stream is None or stream is sys.stderr or stream is sys.__stderr__:
            key, stream = "stderr", None
            if _stderr_console is None:
                _stderr_console = Console(stderr=True)
            # A terminal is what stderr is, whatever FORCE_COLOR says (CI logs stay plain).
            console = _live_console(key, lambda: _stderr_console) if _isatty(sys.stderr) else None
        else:
            key = id(stream)
            console = _live_console(key, lambda: Console(file=stream)) if _isatty(stream) else None

        if console is not None:
            if key not in _displays:
                _displays[key] = _Display(key, console)
            display = _displays[key]
            display.add(line)
            return (lambda: None), (lambda done: _end(display, line, done))

    last = [line.start]

    def write(text: str) -> None:
        with _lock:
            out = sys.stderr if stream is None else stream
            out.write(text + "\n")
            out.flush()

    def tick() -> None:
        if line.last - last[0] >= every and (line.total is None or line.n < line.total):
            last[0] = line.last
            write("  ".join([line.desc, line.info()] if line.desc else [line.info()]))

    def end(done: bool) -> None:
        if not line.closed:
            line.closed = True
            write(line.final(done))

    return tick, end


def _end(display: _Display, line: _Line, done: bool) -> None:
    with _lock:
        if not line.closed:
            line.closed = True
            display.end(line, done)


@atexit.register
def _end_all() -> None:
    """At exit, bars still open (a generator never closed) end as interrupted, so the terminal is
    left with its cursor visible and no live area."""
    with _lock:
        for display in list(_displays.values()):
            for line in list(display.rows):
                _end(display, line, done=False)


def _silenced() -> bool:
    return os.environ.get("GDJAX_PROGRESS", "").strip().lower() in ("0", "false", "no", "off")


def bar(
    items: Iterable[T],
    desc: str = "",
    total: int | None = None,
    every: float = 10.0,
    stream=None,
    disable: bool = False,
    *,
    warmup: bool = False,
) -> Iterator[T]:
    """Yields ``items`` while showing ``desc  i/total  rate  elapsed  ETA``.

    Args:
      items: any iterable; ``total`` defaults to its ``len()`` where it has one.
      desc: what the pass does, shown first.
      total: the number of items, where ``items`` has no length.
      every: off a terminal, the least number of seconds between two progress lines.
      stream: stderr (default), another text stream, or a ``rich.console.Console``.
      disable: show nothing (as does ``GDJAX_PROGRESS=0`` in the environment).
      warmup: the first item includes compilation: until it completes the line says
        ``compiling…``, and rates and ETA count only the items after it.
    """
    if disable or _silenced():
        yield from items
        return
    if total is None:
        try:
            total = len(items)
        except TypeError:
            pass
    line = _Line(desc, total, warmup)
    tick, end = _open(line, stream, every)
    done = False
    try:
        for item in items:
            yield item
            line.advance()
            tick()
        done = True
    finally:
        end(done)


@contextlib.contextmanager
def status(desc: str, stream=None, disable: bool = False) -> Iterator[None]:
    """Shows ``desc`` with a spinner and the time elapsed while the block runs (on a terminal),
    then one line ``desc  done in 1.2 s`` (or ``interrupted after …``). Same ``stream`` and
    ``disable`` as :func:`bar`."""
    if disable or _silenced():
        yield
        return
    line = _Line(desc, None, False, is_status=True)
    _, end = _open(line, stream, math.inf)
    done = False
    try:
        yield
        done = True
    finally:
        end(done)

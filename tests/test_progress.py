"""Progress lines: plain off a terminal, one live area on one, one final line per pass.

Terminal output is checked on what a terminal would show: :class:`_Screen` replays the control
codes rich writes (a few CSI sequences) and the tests assert on the resulting rows, so a
leftover character, a half-erased live area or a hidden cursor would show. No assertion depends
on how long anything takes.
"""

import io
import re
import threading

import pytest
from rich.console import Console

from gdjax import progress

CONTROL = re.compile(r"[\r\x1b]")
TIME = r"\d[\dhm.]*(?: s|s)"  # 0.0 s, 1m40s, 1h02m03s


class _Screen:
    """Just enough of a terminal for rich's live display: text, CR, LF, and the CSI codes
    cursor up (A), erase in line (K), column (G), styles (m), cursor shown/hidden (?25h/l).
    Any other code fails the test."""

    def __init__(self, data: str):
        self.rows, self.row, self.col, self.cursor = [[]], 0, 0, True
        for tok in re.split(r"(\x1b\[[0-9;?]*[A-Za-z]|\r|\n)", data):
            if tok == "\r":
                self.col = 0
            elif tok == "\n":
                self.row, self.col = self.row + 1, 0
            elif tok.startswith("\x1b["):
                self._csi(tok[2:-1], tok[-1])
            else:
                line = self._line()
                for ch in tok:
                    line.extend(" " * (self.col + 1 - len(line)))
                    line[self.col] = ch
                    self.col += 1
        self._line()

    def _line(self) -> list:
        self.rows.extend([] for _ in range(self.row + 1 - len(self.rows)))
        return self.rows[self.row]

    def _csi(self, arg: str, op: str) -> None:
        n = int(arg) if arg.isdigit() else None
        if op == "A":
            self.row = max(0, self.row - (n or 1))
        elif op == "K":
            del self._line()[0 if n == 2 else self.col :]
        elif op == "G":
            self.col = (n or 1) - 1
        elif arg == "?25" and op in "hl":
            self.cursor = op == "h"
        elif op != "m":
            raise AssertionError(f"unexpected control code {arg}{op}")

    def lines(self) -> list[str]:
        out = ["".join(r).rstrip() for r in self.rows]
        while out and not out[-1]:
            out.pop()
        return out

    def at_fresh_line(self) -> bool:
        return self.cursor and self.col == 0 and not "".join(self._line()).strip()


def _terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    console = Console(
        file=out, force_terminal=True, color_system=None, width=100, height=30, _environ={}
    )
    return console, out


def _finals(text: str, desc: str) -> list[str]:
    """The final lines of ``desc``'s bar in ``text`` (raw output, control codes and all)."""
    return re.findall(rf"{re.escape(desc)}  \d+/\d+  (?:done in|interrupted after) .*", text)


@pytest.fixture(autouse=True)
def _enabled(monkeypatch):
    monkeypatch.delenv("GDJAX_PROGRESS", raising=False)


# Off a terminal.


def test_plain_lines_and_one_final_line():
    out = io.StringIO()
    assert list(progress.bar(range(5), "pass", every=0.0, stream=out)) == list(range(5))
    text = out.getvalue()
    assert not CONTROL.search(text)
    lines = text.splitlines()
    assert [line.split("  ")[1] for line in lines[:-1]] == ["1/5", "2/5", "3/5", "4/5"]
    assert all(re.search(r"it/s|s/it", line) for line in lines[:-1])
    assert re.fullmatch(rf"pass  5/5  done in {TIME}  .*", lines[-1])
    assert len(_finals(text, "pass")) == 1


def test_plain_default_every_writes_the_final_line_and_length_comes_from_items():
    out = io.StringIO()
    for _ in progress.bar(iter(range(3)), "no length", stream=out):
        pass
    for _ in progress.bar([1, 2], "list", stream=out):
        pass
    text = out.getvalue()
    assert re.search(rf"^no length  3  done in {TIME}", text, re.M)
    assert len(_finals(text, "list")) == 1 and "2/2" in _finals(text, "list")[0]


def test_default_stream_is_stderr(capsys):
    for _ in progress.bar(range(2), "to stderr"):
        pass
    with progress.status("a step"):
        pass
    captured = capsys.readouterr()
    assert captured.out == ""
    assert not CONTROL.search(captured.err)
    assert len(_finals(captured.err, "to stderr")) == 1
    assert re.search(rf"^a step  done in {TIME}$", captured.err, re.M)


def test_plain_threads_each_end_with_their_own_line():
    out = io.StringIO()
    both = threading.Barrier(2, timeout=30)

    def run(desc):
        for i in progress.bar(range(20), desc, every=0.0, stream=out):
            if i == 0:
                both.wait()  # both bars are active at the same time

    threads = [threading.Thread(target=run, args=(d,)) for d in ("pass A", "pass B")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    text = out.getvalue()
    assert not CONTROL.search(text)
    assert all(line.startswith(("pass A  ", "pass B  ")) for line in text.splitlines())
    assert len(_finals(text, "pass A")) == 1 and len(_finals(text, "pass B")) == 1


def test_plain_interrupted():
    out = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        for i in progress.bar(range(40), "ctrl-c", stream=out):
            if i == 12:
                raise KeyboardInterrupt
    gen = progress.bar(range(40), "closed", stream=out)
    next(gen), next(gen)
    gen.close()

    def failing():
        yield 1
        raise ValueError("the iterable fails")

    with pytest.raises(ValueError):
        list(progress.bar(failing(), "failing", stream=out))
    for _ in progress.bar(range(40), "break", stream=out):
        break
    text = out.getvalue()
    assert re.search(rf"^ctrl-c  12/40  interrupted after {TIME}", text, re.M)
    assert re.search(r"^closed  1/40  interrupted", text, re.M)
    assert re.search(r"^failing  1  interrupted", text, re.M)
    assert re.search(r"^break  0/40  interrupted", text, re.M)
    assert len(text.splitlines()) == 4


def test_warmup_rates_count_only_items_after_the_first(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(progress, "_now", lambda: clock[0])
    out = io.StringIO()
    for i in progress.bar(range(4), "warm", every=0.0, stream=out, warmup=True):
        clock[0] = 100.0 + i  # the first item takes 100 s (it compiles), the others 1 s
    for _ in progress.bar(range(2), "cold", every=1000.0, stream=out):
        clock[0] += 50.0
    assert out.getvalue().splitlines() == [
        "warm  1/4  1:40",
        "warm  2/4  1.00 it/s  1:41  ETA 0:02",
        "warm  3/4  1.00 it/s  1:42  ETA 0:01",
        "warm  4/4  done in 1m43s  first 1m40s, then 1.00 it/s",
        "cold  2/2  done in 1m40s  50.00 s/it",
    ]


def test_status_plain():
    out = io.StringIO()
    with progress.status("compiling the programs", stream=out):
        assert out.getvalue() == ""
    with pytest.raises(RuntimeError):
        with progress.status("failing step", stream=out):
            raise RuntimeError
    lines = out.getvalue().splitlines()
    assert re.fullmatch(rf"compiling the programs  done in {TIME}", lines[0])
    assert re.fullmatch(rf"failing step  interrupted after {TIME}", lines[1])
    assert len(lines) == 2


def test_disable_and_environment_silence_everything(monkeypatch):
    out = io.StringIO()
    assert list(progress.bar(range(3), "off", stream=out, disable=True, every=0.0)) == [0, 1, 2]
    with progress.status("off", stream=out, disable=True):
        pass
    monkeypatch.setenv("GDJAX_PROGRESS", "0")
    console, term = _terminal()
    assert list(progress.bar(range(3), "env", stream=out, every=0.0)) == [0, 1, 2]
    assert list(progress.bar(range(3), "env", stream=console)) == [0, 1, 2]
    with progress.status("env", stream=console):
        pass
    assert out.getvalue() == "" and term.getvalue() == ""


def test_console_that_is_not_a_terminal_gets_plain_lines():
    out = io.StringIO()
    for _ in progress.bar(range(3), "plain console", stream=Console(file=out)):
        pass
    assert not CONTROL.search(out.getvalue())
    assert len(_finals(out.getvalue(), "plain console")) == 1


# On a terminal.


def test_terminal_threads_have_own_rows_then_own_final_lines():
    console, out = _terminal()
    both = threading.Barrier(3, timeout=30)
    go = threading.Event()

    def run(desc):
        for i in progress.bar(range(5), desc, stream=console):
            if i == 0:
                both.wait()
                go.wait(30)

    threads = [threading.Thread(target=run, args=(d,)) for d in ("pass A", "pass B")]
    for t in threads:
        t.start()
    both.wait()  # both bars are active: the live area has a row for each
    during = _Screen(out.getvalue()).lines()
    go.set()
    for t in threads:
        t.join()
    assert sorted(line.split()[1:3] for line in during) == [["pass", "A"], ["pass", "B"]]
    assert all("0/5" in line for line in during)
    screen = _Screen(out.getvalue())
    lines = screen.lines()
    assert len(lines) == 2, lines
    assert sorted(line[:6] for line in lines) == ["pass A", "pass B"]
    assert all(re.fullmatch(rf"pass [AB]  5/5  done in {TIME}  .*it/s", line) for line in lines)
    assert screen.at_fresh_line()
    assert [len(_finals(out.getvalue(), d)) for d in ("pass A", "pass B")] == [1, 1]
    assert not progress._displays


def test_terminal_warmup_says_compiling_before_the_first_item():
    console, out = _terminal()
    for i in progress.bar(range(3), "warm pass", stream=console, warmup=True):
        if i == 0:
            (row,) = _Screen(out.getvalue()).lines()
            assert "warm pass" in row and "0/3" in row and "compiling…" in row
    lines = _Screen(out.getvalue()).lines()
    assert len(lines) == 1 and re.fullmatch(rf"warm pass  3/3  done in {TIME}.*", lines[0])


def test_terminal_status_spinner_then_one_line():
    console, out = _terminal()
    with progress.status("compiling the programs", stream=console):
        (row,) = _Screen(out.getvalue()).lines()
        assert "compiling the programs" in row and "done" not in row
    screen = _Screen(out.getvalue())
    assert len(screen.lines()) == 1
    assert re.fullmatch(rf"compiling the programs  done in {TIME}", screen.lines()[0])
    assert screen.at_fresh_line()


def test_terminal_interrupted_leaves_a_sane_terminal():
    console, out = _terminal()
    with pytest.raises(KeyboardInterrupt):
        for i in progress.bar(range(40), "ablating", stream=console):
            if i == 12:
                raise KeyboardInterrupt
    screen = _Screen(out.getvalue())
    assert len(screen.lines()) == 1
    assert re.fullmatch(rf"ablating  12/40  interrupted after {TIME}.*", screen.lines()[0])
    assert screen.at_fresh_line()
    console.print("next")
    assert _Screen(out.getvalue()).lines()[1:] == ["next"]
    assert not progress._displays


def test_terminal_bar_never_closed_is_ended_at_exit():
    console, out = _terminal()
    gen = progress.bar(range(9), "abandoned", stream=console)
    next(gen), next(gen), next(gen)
    progress._end_all()  # what atexit runs
    screen = _Screen(out.getvalue())
    assert len(screen.lines()) == 1 and screen.lines()[0].startswith("abandoned  2/9  interrupted")
    assert screen.at_fresh_line()
    gen.close()  # the generator's own ending does not print a second line
    assert len(_Screen(out.getvalue()).lines()) == 1

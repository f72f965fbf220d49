"""What every example script shares: one output root whose defaults chain, and the manners of
a command a person types.

* Every script writes under ``out/`` (``OUT``): ``examples/dissect.py`` into ``out/dissect``,
  and the scripts that read a dissection default to ``out/dissect/dissect.json``, so after the
  main job the others run with no path flags.
* :func:`run` starts a script: a bad flag or input (:class:`gdjax.errors.InputError`) ends with
  one line on stderr, ``error: ...``, and exit status 2, with no traceback and nothing written;
  Ctrl-C ends with one line and status 130 (rerun the same command to resume).
"""

import os
import sys

from absl import app, flags, logging

from gdjax.errors import InputError

OUT = "out"
DISSECT_DIR = os.path.join(OUT, "dissect")
DISSECT_JSON = os.path.join(DISSECT_DIR, "dissect.json")


def fail(message: str) -> None:
    """Print ``error: message`` on stderr and exit with status 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def run(main) -> None:
    """``absl.app.run(main)`` with one-line errors (exit 2) and a one-line Ctrl-C (exit 130)."""

    def parse(argv):
        try:
            return flags.FLAGS(argv)
        except flags.Error as e:
            fail(str(e))

    def guarded(argv):
        logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint at INFO
        try:
            return main(argv)
        except InputError as e:
            fail(str(e))
        except KeyboardInterrupt:
            print("\ninterrupted: run the same command again to resume", file=sys.stderr)
            sys.exit(130)

    app.run(guarded, flags_parser=parse)


def positive(**values: int) -> None:
    """Raises :class:`InputError` for the first flag that is not a positive integer."""
    for name, value in values.items():
        if value is None or value < 1:
            raise InputError(f"--{name} must be a positive integer, got {value}")


def units(values, num_units: int) -> list[int]:
    """Unit numbers from a list flag (empty entries dropped), each in ``[0, num_units)``."""
    out = []
    for v in values:
        v = str(v).strip()
        if not v:
            continue
        try:
            u = int(v)
        except ValueError:
            raise InputError(f"--units: {v!r} is not a unit number") from None
        if not 0 <= u < num_units:
            raise InputError(f"--units: unit {u} is out of range 0..{num_units - 1}")
        out.append(u)
    if not out:
        raise InputError("--units: no unit given")
    return out


def label(name: str, labels, flag: str = "classname") -> int:
    """The number of class ``name`` among ``labels`` (names), or :class:`InputError` listing
    the classes (label 0, no label, is not a class)."""
    if name in labels[1:]:
        return list(labels).index(name)
    raise InputError(f"--{flag}: unknown class {name!r}; classes are {', '.join(labels[1:])}")


def layer(name: str, module) -> str:
    """``name`` if the generator ``module`` has that layer, else :class:`InputError`."""
    if name not in module.layers:
        raise InputError(
            f"--layer: unknown layer {name!r}; valid layers: {', '.join(module.layers)}"
        )
    return name

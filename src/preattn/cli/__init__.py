"""Command line: ``preattn <command>`` (also ``python -m preattn <command>``).

Commands: ``train``, ``compare``, ``ablate``, ``eval``, ``demo``, ``summary``, ``viz``,
``predict``, ``check``, ``export``: one module each (``eval`` in :mod:`preattn.cli.evaluate`,
as ``eval`` is a Python built-in) holding its parser, ``add_parser(subparsers)``, beside its
``run(args)``, which parses, calls the library and prints. This module assembles them; the
flags several commands share are generated in :mod:`preattn.cli._flags` and
:mod:`preattn.cli._network`.

:func:`main` runs a command and turns the errors a user can fix into one line on stderr
and an exit status:

- 2: preattn refused an argument or the data (a ``ValueError``, a ``TypeError`` raised by
  preattn's own checks, an ``OSError``, a :class:`~preattn.data.errors.DatasetError`, a
  :class:`~preattn.train.RunError`, a missing optional package, out of memory);
- 1: training diverged (``train``) or an ablation's runs failed (a diverged run of a grid
  is an outcome its report lists, not a failure; ``preattn check``: a warning);
- 130: interrupted.

Any other exception (a ``TypeError`` raised by a bug, say) keeps its traceback, as every
error does with ``--debug`` or ``PREATTN_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence

from .. import __version__
from .._console import console_lines
from .._failures import out_of_memory_message
from ..data.errors import DatasetError
from . import ablate, check, compare, demo, evaluate, export, predict, summary, train, viz
from ._errors import one_line, raised_by_preattn

__all__ = ["COMMANDS", "build_parser", "main"]

# the command modules, in the order `preattn --help` lists them; each has
# add_parser(subparsers) and run(args)
COMMANDS = (train, compare, ablate, evaluate, demo, summary, viz, predict, check, export)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="preattn",
        description="Pre-residual attention (Pattern-3) for CNNs.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"preattn {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the traceback of an error (also PREATTN_DEBUG=1)",
    )
    # each subcommand accepts exactly its own flags: no abbreviations (--seed is not --seeds)
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = args.debug or os.environ.get("PREATTN_DEBUG", "") not in ("", "0")
    from ..ablate import AblationFailed
    from ..train.loop import TrainingDiverged
    from ..train.rundir import RunError

    try:
        with console_lines():  # what the library logs as it goes: plain lines on stdout
            return int(args.func(args))
    except BrokenPipeError:  # `preattn ... | head`: the reader has gone, not an error
        with contextlib.suppress(OSError, ValueError):  # no flush error at exit either
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (TrainingDiverged, AblationFailed) as exc:
        if debug:
            raise
        print(f"preattn {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, OSError, ImportError, DatasetError, RunError) as exc:
        if debug or (isinstance(exc, TypeError) and not raised_by_preattn(exc)):
            raise  # a TypeError from elsewhere is a bug: its traceback, not a usage line
        print(f"preattn {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as exc:  # RuntimeError: torch's out-of-memory errors
        message = out_of_memory_message(exc)
        if debug or message is None:
            raise
        print(f"preattn {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"preattn {args.command}: interrupted", file=sys.stderr)
        return 130

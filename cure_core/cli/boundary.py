"""The one error boundary of the command line.

Whatever a user types ends in one of: the command's output and status 0; one line
``error: <problem> — fix: <fix>`` and status 2 (a :class:`CureError`, a settings validation
error, or an ``analysis`` input error); ``interrupted`` and 130. Library warnings
(``warnings.warn``) become one ``warning: ...`` line each, and ``cure_core`` log messages
(progress-like notes such as a download) one line each — never a traceback.

Under a launcher only ``attribute``, ``circuit`` and ``groups`` (``torchrun``) and ``unlearn``
(``accelerate launch``) run: each process joins the process group here, once, and the command
gets its :class:`~cure_core.runtime.Runtime` as ``args.runtime`` (one process otherwise). Rank 0
shows the warnings, and an error of another rank names its rank.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from pydantic import ValidationError

from analysis.errors import AnalysisInputError
from cure_core.cli.commands import environment
from cure_core.cli.parser import HELP, build_parser
from cure_core.errors import CureError
from cure_core.runtime import ONE_PROCESS, joined, launch
from cure_core.settings import describe

DISTRIBUTED_COMMANDS = ("attribute", "circuit", "groups", "unlearn")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    rank, size = launch() or (0, 1)
    with _library_messages(show=rank == 0):
        try:
            command = _command(argv)
            if size > 1 and command is not None and command not in DISTRIBUTED_COMMANDS:
                raise CureError(
                    f"`cure {command}` does not run across processes (the launcher started {size})",
                    "run it as one process; attribute, circuit and groups run under torchrun, unlearn under "
                    "accelerate launch",
                )
            args = build_parser(command).parse_args(argv)
            environment(args)  # a bad CURE_* variable is refused before any work
            with joined() if command in DISTRIBUTED_COMMANDS else nullcontext(ONE_PROCESS) as runtime:
                args.runtime = runtime
                return int(args.func(args) or 0)
        except SystemExit as done:  # --help, or an argparse exit of its own
            return done.code if isinstance(done.code, int) else 0
        except (CureError, ValidationError, AnalysisInputError) as err:
            print(f"{f'rank {rank}: ' if rank else ''}error: {one_line(err)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted; cached entries are written atomically, nothing partial was kept", file=sys.stderr)
            return 130
        except BrokenPipeError:  # e.g. `cure forget | head`: the reader left; not an error of ours
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0


def one_line(err: CureError | ValidationError | AnalysisInputError) -> str:
    """``<problem> — fix: <fix>`` for every kind of user error."""
    if isinstance(err, ValidationError):  # settings built outside SettingsOptions.build
        err = CureError(
            f"invalid {err.title} settings: {describe(err)}", "see `cure COMMAND --help` for the allowed values"
        )
    elif isinstance(err, AnalysisInputError):
        err = CureError(err.problem, err.fix)
    return " ".join(str(err).split())


def _command(argv: list[str]) -> str | None:
    """The command named in ``argv`` (the first word that is not an option), if it is one."""
    word = next((a for a in argv if not a.startswith("-")), None)
    return word if word in HELP else None


@contextmanager
def _library_messages(show: bool = True) -> Iterator[None]:
    """Show library warnings and ``cure_core`` log records as single lines on stderr (with
    ``show`` false, as on ranks other than 0 under torchrun, drop them: rank 0 shows the same)."""

    def warn(
        message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None, line: str | None = None
    ) -> None:
        if show:
            print(f"warning: {' '.join(str(message).split())}", file=sys.stderr)

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars on every model load: not ours to show
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("cure_core")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if show else logging.ERROR)
    with warnings.catch_warnings():
        warnings.showwarning = warn
        try:
            yield
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)

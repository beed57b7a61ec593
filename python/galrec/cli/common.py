"""What every ``galrec`` command shares: how it reports a user error, and option spellings.

A user error is one ``Error: ...`` line that names the file, key or id at fault, with exit
status 2 (click's status for usage errors) and no traceback.

The commands raise the project's own exceptions (galrec.data's DataError, ConfigError and
RunDirError, a missing optional package, a bad value, an unreadable file); :class:`CommandGroup`
turns them into that line at the command-line boundary, so no command keeps its own copy of
the mapping. ``GALREC_DEBUG=1`` in the environment shows the traceback instead.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import click

#: Set to 1 to see the traceback of an error reported as one line.
DEBUG_VARIABLE = "GALREC_DEBUG"


class UserError(click.ClickException):
    """A one-line ``Error: ...`` with exit status 2 (a click UsageError would add the usage)."""

    exit_code = 2


def user_error_types() -> tuple[type[BaseException], ...]:
    """The exceptions that mean the input, not galrec, is at fault.

    ValueError covers ConfigError, RunDirError, GraphFileError and validation; OSError an
    unreadable input or unwritable output; ImportError's MissingOptionalDependency (and the
    backbone's BackboneNotInstalled) a missing extra. Imported here, when an error is being
    reported, so ``galrec --help`` stays fast.
    """
    from galrec._optional import MissingOptionalDependency
    from galrec.data.errors import DataError

    return DataError, MissingOptionalDependency, ValueError, OSError


def one_line(error: BaseException) -> str:
    """``error`` as one line: ``path: reason`` for an OS error, else its message with line breaks
    and runs of spaces collapsed."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return " ".join(str(error).split()) or type(error).__name__


class CommandGroup(click.Group):
    """A click group whose commands (and sub-groups') user errors end as :class:`UserError`."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise  # click's own handling: the reader of stdout went away
        except user_error_types() as error:
            if os.environ.get(DEBUG_VARIABLE) == "1":
                raise
            raise UserError(one_line(error)) from error


class AliasedOption(click.Option):
    """An option with old spellings (``aliases``) that still work but are left out of ``--help``.

    Each concept has one spelling across the commands (``-o/--out`` for where results go,
    ``-k/--k`` for a cut-off); an older one such as ``--output`` keeps existing scripts working.
    """

    def __init__(
        self, param_decls: Sequence[str], *, aliases: Sequence[str] = (), **attrs: Any
    ) -> None:
        super().__init__([*param_decls, *aliases], **attrs)
        self.aliases = frozenset(aliases)

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        shown, self.opts = self.opts, [o for o in self.opts if o not in self.aliases]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = shown


#: ``--threads`` of every command that runs a model: unset (None) picks the count from the
#: machine's load when the command starts (galrec.training.threads).
threads_option = click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="torch CPU threads (default: all cores, less those other processes keep busy when "
    "the command starts; more threads than free cores stall every step).",
)

"""The ``galrec`` command line: one click group, each subsystem adds its commands.

The group reports every command's user errors the same way (galrec.cli.common).
"""

from __future__ import annotations

import click

from galrec import __version__
from galrec.cli.common import CommandGroup
from galrec.cli.data import data as data_commands
from galrec.cli.graph import graph


@click.group(cls=CommandGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="galrec")
def main() -> None:
    """galrec: fine-tune language models for recommendation with GAL-Rec.

    \b
    Example:
      galrec quickstart
    """


main.add_command(data_commands)
main.add_command(graph)


def _register_evaluation_commands() -> None:
    from galrec.cli.evaluate import COMMANDS

    for command in COMMANDS:
        main.add_command(command)


_register_evaluation_commands()


def _register_training_commands() -> None:
    from galrec.cli.serve import COMMANDS as SERVE_COMMANDS
    from galrec.cli.train import COMMANDS

    for command in (*COMMANDS, *SERVE_COMMANDS):
        main.add_command(command)


_register_training_commands()

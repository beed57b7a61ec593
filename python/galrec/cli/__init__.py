"""The ``galrec`` command line: the click group (``app``) and each subsystem's commands."""

from galrec.cli.app import main

__all__ = ["main"]

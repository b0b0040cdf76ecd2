"""Errors a user can cause; the CLI prints their one-sentence message and exits with status 2."""


class UserError(Exception):
    """A mistake in the command line, the data or the machine that the user can fix."""

"""Errors a user can cause and fix. Scripts print them as one line and exit non-zero."""


class UserError(Exception):
    """A problem with the user's input (config, paths, keys) that says how to fix it."""

"""Errors a user can cause and fix. Scripts print them as one line and exit non-zero."""


class UserError(Exception):
    """A problem with the user's input (config, paths, keys) that says how to fix it."""


class RemoteError(RuntimeError):
    """A remote service failed for good (after retries): the message names the cause
    (timeout, refused connection to a host, HTTP status and message) and what to do."""

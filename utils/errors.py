"""One-line errors for bad input, and the guard every command-line script runs under."""
import functools
import sys


class UserError(Exception):
    """Bad input the user can fix (a missing file, a wrong flag). Printed as one line, no traceback."""


def cli_main(func):
    """Run ``func`` so that a ``UserError`` prints ``error: ...`` to stderr and exits with status 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)

    return wrapper

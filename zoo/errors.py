"""The one exception type the CLI turns into a single line and exit code 2."""


class ZooError(Exception):
    """Bad input or an unrecoverable run condition, explained in one line for a human."""

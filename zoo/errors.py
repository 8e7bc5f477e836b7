"""The one exception type the CLI turns into a single line and exit code 2."""


class ZooError(Exception):
    """Bad input or an unrecoverable run condition, explained in one line for a human."""


class Diverged(ZooError):
    """Training stopped because the loss was no longer finite (the harness's NaN rule). A sweep or a chapter
    records the point as diverged and goes on; the CLI prints the one line as for any ZooError."""


class Interrupted(BaseException):
    """A run stopped by SIGINT (Ctrl-C) or SIGTERM: one line for a human, and the exit status a shell gives that
    signal (130, 143). A BaseException like KeyboardInterrupt, so that code catching errors does not swallow it."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum, self.exit_code = signum, 128 + signum

    def __reduce__(self):  # crosses process boundaries intact (the book's parallel runs)
        return (Interrupted, (str(self), self.signum))

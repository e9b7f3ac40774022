"""User-facing errors.

Every problem caused by the user's input is raised as an :class:`IsscliError`: the CLI prints
it as one line (``error: <what> — <fix>``) and exits nonzero, with no traceback.

Messages speak of parameters as the library names them, in backticks (```target_hidden```,
```weight_threshold```=1e-4); the CLI shows the flag each maps to (``--target-hidden``,
``--weight-threshold=1e-4``), so one message serves notebook users and command-line users.
"""

from __future__ import annotations


class IsscliError(Exception):
    """A problem with the user's input, with a hint on how to fix it."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


class CheckpointError(IsscliError):
    """A checkpoint is missing, unreadable or inconsistent."""


class SpecError(IsscliError):
    """A group spec is malformed or does not fit the checkpoint."""


class OutputError(IsscliError):
    """An output path cannot be written safely."""



class GateFailed(IsscliError):
    """A CI gate was missed (``eval --fail-above/--fail-below/--max-loss``, ``bench --fail-below``): a failed check,
    not a bad input, so exit 1. The library returns each gate's verdict; a caller that wants it as an error raises
    this (the command line does)."""

    exit_code = 1


#: What the command line says when Ctrl-C or SIGTERM ends a command (exit 130).
INTERRUPTED = "interrupted: no output was written"


class Terminated(KeyboardInterrupt):
    """SIGTERM, as the command line raises it where the process is: everything cleans up as for Ctrl-C
    (temp files removed, nothing half-written), and the command exits 130 with the same line."""

"""The ``isscli`` command's entry point, kept tiny: it sets up Ctrl-C and SIGTERM before the heavy imports (torch),
so that a command interrupted while it starts ends like one interrupted later — one line, no traceback.

SIGTERM is raised as :class:`isscli.api.Terminated`, a ``KeyboardInterrupt``: temp files are removed and
nothing is left half-written, and the command exits 130 with the same line, as for Ctrl-C. (Not in the workers of
``torchrun``, whose agent ends them with SIGTERM and restarts the group from the resume file: there SIGTERM keeps its
default action, so that a worker blocked in a collective ends at once.)
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType
from typing import Optional

from isscli.io.errors import INTERRUPTED, Terminated


def _terminate(signum: int, frame: Optional[FrameType]) -> None:
    raise Terminated()


def main(argv: Optional[list[str]] = None) -> None:
    """Install the signal handling, then load and run the command line (:func:`isscli.cli.main.main`)."""
    try:
        if "TORCHELASTIC_RUN_ID" not in os.environ:  # torchrun's workers: its agent stops and restarts them itself
            signal.signal(signal.SIGTERM, _terminate)
        from isscli.cli.main import main as run
    except KeyboardInterrupt:
        sys.stderr.write(INTERRUPTED + "\n")
        sys.exit(130)
    run(argv)


if __name__ == "__main__":
    main()

"""``python -m normstyle`` and the ``normstyle`` command (``run``).

Signals are handled from the first moment: a Ctrl-C or SIGTERM that arrives while Python is still
importing the libraries is noted and acted on once they are loaded (see ``normstyle.cli.main``);
once the work is done, both are ignored while the interpreter shuts down, so that a finished run
never ends in a traceback or a lost exit code. Nothing heavy is imported here.
"""

import os
import signal
import sys

_pending: list[int] = []


def _note(signum: int, _frame: object) -> None:
    _pending.append(signum)


def run() -> None:
    """The console entry point: ``sys.exit(main())`` with the signal handling above."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _note)
    from normstyle.cli import main

    code = main(pending=_pending)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    try:
        if sys.stdout is not None:  # None: started with stdout closed (>&-)
            sys.stdout.flush()
    except (OSError, ValueError):
        # stdout is full, closed or a broken pipe, and the work itself is complete: point it at
        # /dev/null so that the interpreter's own flush at exit cannot fail a second time.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(code)


if __name__ == "__main__":
    run()

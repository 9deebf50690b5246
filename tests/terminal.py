"""Start a command the way a terminal does, so that the tests' Ctrl-C means what a user's does.

A shell without job control starts a background command (``make test &``, a CI step run in the
background) with SIGINT *ignored*, and every process it starts inherits that: Python then installs
no KeyboardInterrupt handler, and a test's Ctrl-C would be lost however the program handles it.
A terminal's foreground command has SIGINT at its default, which is what these keyword arguments
give the started process, in a session (and process group) of its own, so that ``os.killpg``
reaches it and its workers as the terminal's Ctrl-C does.
"""

from __future__ import annotations

import signal


def _sigint_as_in_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


#: ``subprocess.Popen(..., **AS_IN_A_TERMINAL)``
AS_IN_A_TERMINAL = {"start_new_session": True, "preexec_fn": _sigint_as_in_a_terminal}

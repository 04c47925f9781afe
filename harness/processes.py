"""What every child process of the harness does first: die with its parent."""
from __future__ import annotations

import ctypes
import os
import signal


def die_with_parent(parent: int | None = None) -> None:
    """Ask Linux to SIGKILL this process when its parent dies (``PR_SET_PDEATHSIG``), so that no trial
    worker or figure worker outlives a killed ``harness`` (reparented to init, blocked forever). With
    ``parent``, a parent that died before the request took effect ends this process at once."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if parent is not None and os.getppid() != parent:
        os._exit(1)

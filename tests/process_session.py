"""Ending a process session: a script started with ``start_new_session=True`` leads one, and
the processes it starts (a Ray cluster's daemons and workers) stay in it, so ending the
session ends exactly them, where Ray's own ``ray stop`` would also end other sessions' Ray."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def end_session(session: int, grace_s: float = 10.0) -> list[int]:
    """Stop every process of process session ``session`` (a script started with
    ``start_new_session=True`` leads one; the Ray processes it started stay in it): SIGTERM,
    then SIGKILL after ``grace_s``. Returns the ids signalled."""

    def members() -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # Fields after the command (which may hold spaces) in parentheses: state, ppid,
            # pgrp, session.
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[3]) == session and fields[0] != "Z":
                found.append(int(entry.name))
        return found

    def send(pids: list[int], sig: signal.Signals) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    signalled = members()
    send(signalled, signal.SIGTERM)
    deadline = time.time() + grace_s
    while members() and time.time() < deadline:
        time.sleep(0.5)
    send(members(), signal.SIGKILL)
    return signalled

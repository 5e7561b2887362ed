"""Leases on a shared local server: one file per process using it, named by its pid, so the server
stops when the last live process that leased it is gone."""

from __future__ import annotations

import os
from pathlib import Path


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child is dead for our purposes
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def live_leases(lease_dir: Path, *, prune: bool = False) -> list[int]:
    """Pids of the live processes holding a lease in ``lease_dir``; ``prune`` deletes dead ones."""
    live = []
    for f in lease_dir.glob("*") if lease_dir.exists() else []:
        if f.name.isdigit() and pid_alive(int(f.name)):
            live.append(int(f.name))
        elif prune:
            f.unlink(missing_ok=True)
    return live

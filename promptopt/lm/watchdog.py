"""Stop an auto-started local server once no live process holds a lease on it.

Leaseholders release the server at exit, but a process killed with SIGKILL (a timeout, an
out-of-memory kill, a session that ends) never does, and the server would run on — still working
through the requests of its dead clients and slowing every later job. The watchdog runs beside each
auto-started server: ``python -m promptopt.lm.watchdog --server-dir DIR --pid PID``. It checks the
lease files every ``poll`` seconds and, after ``grace`` seconds with no live leaseholder, stops the
server under the server directory's lock (so a process taking a lease at that moment waits and then
starts a fresh server). A server marked ``keep_alive`` (``promptopt lm start``) is left alone.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from promptopt.io import file_lock


def watch(server_dir: Path, pid: int, *, grace: float = 30.0, poll: float = 5.0) -> str:
    """Block until the server ends or is stopped for want of leases; returns what happened."""
    from promptopt.lm.leases import live_leases, pid_alive
    from promptopt.lm.server import LocalServer

    state_file = server_dir / "server.json"
    idle_since: float | None = None
    while True:
        if not pid_alive(pid):
            return "server exited"
        try:
            state = json.loads(state_file.read_text())
        except (OSError, ValueError):
            state = None
        if state is None or state.get("pid") != pid:
            return "server replaced"  # someone else stopped it or started another
        if state.get("keep_alive") or live_leases(server_dir / "leases"):
            idle_since = None
        elif idle_since is None:
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since >= grace:
            with file_lock(server_dir / "lock"):
                if not live_leases(server_dir / "leases"):
                    LocalServer._stop_pid(pid)
                    state_file.unlink(missing_ok=True)
                    return "stopped: no leaseholder left"
            idle_since = None
        time.sleep(poll)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server-dir", required=True, type=Path)
    ap.add_argument("--pid", required=True, type=int)
    ap.add_argument("--grace", type=float, default=30.0)
    ap.add_argument("--poll", type=float, default=5.0)
    args = ap.parse_args(argv)
    print(watch(args.server_dir, args.pid, grace=args.grace, poll=args.poll), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

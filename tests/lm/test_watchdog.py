"""The server watchdog stops an auto-started server once every leaseholder is gone, and only then."""

import json
import os
import subprocess
import sys
import time

from promptopt.lm.watchdog import watch


def fake_server(tmp_path, keep_alive=False):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    (tmp_path / "leases").mkdir(exist_ok=True)
    (tmp_path / "server.json").write_text(json.dumps({"pid": proc.pid, "port": 1, "keep_alive": keep_alive}))
    return proc


def dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stops_the_server_when_leaseholders_died_without_releasing(tmp_path):
    proc = fake_server(tmp_path)
    (tmp_path / "leases" / str(dead_pid())).touch()  # a client killed with SIGKILL
    outcome = watch(tmp_path, proc.pid, grace=0.2, poll=0.05)
    assert outcome == "stopped: no leaseholder left"
    assert proc.wait(timeout=10) is not None
    assert not (tmp_path / "server.json").exists()


def test_a_live_lease_keeps_the_server(tmp_path):
    proc = fake_server(tmp_path)
    lease = tmp_path / "leases" / str(os.getpid())
    lease.touch()
    import threading

    outcome = []
    t = threading.Thread(target=lambda: outcome.append(watch(tmp_path, proc.pid, grace=0.2, poll=0.05)))
    t.start()
    time.sleep(1.0)
    assert proc.poll() is None and not outcome  # still serving while we hold the lease
    lease.unlink()
    t.join(timeout=10)
    assert outcome == ["stopped: no leaseholder left"] and proc.wait(timeout=10) is not None


def test_keep_alive_and_replaced_servers_are_left_alone(tmp_path):
    proc = fake_server(tmp_path, keep_alive=True)
    try:
        (tmp_path / "server.json").write_text(json.dumps({"pid": proc.pid + 1, "port": 1}))
        assert watch(tmp_path, proc.pid, grace=0.1, poll=0.05) == "server replaced"
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()
    assert watch(tmp_path, proc.pid, grace=0.1, poll=0.05) == "server exited"

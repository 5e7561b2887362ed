"""Run untrusted, model-written Python in a throwaway sandbox and report whether its checks passed.

Isolation (the default, ``isolation="bwrap"``). Each call runs the code under bubblewrap
(``bwrap``) in new network, PID, IPC, UTS, mount (and, where possible, cgroup) namespaces:

* Files: the sandbox's root is an empty tmpfs. Only ``/usr`` (with the ``/bin``, ``/lib*``
  links or directories) and the interpreter's install prefix (``sys.base_prefix``, which may sit
  under a home directory; nothing else of it) are bound in, read-only. ``/etc``, home directories,
  the project checkout and the virtual environment are absent. The working directory
  (``/sandbox``), ``/tmp`` and ``/dev/shm`` are fresh size-capped tmpfs mounts that vanish with
  the run; the code and the runner are bound into ``/sandbox`` read-only.
* Network: an empty network namespace (loopback only), so sockets, ctypes, child processes and
  bash's ``/dev/tcp`` cannot reach the host or anything else. The runner also makes
  ``socket.socket`` raise a readable error for the common case.
* Processes: the code runs as PID 2 of its own PID namespace under bwrap's reaper, so it cannot see
  or signal host processes, nor kill that reaper (its parent). When the code exits, or
  at the wall-clock timeout when the reaper is killed, the kernel kills every process left in the
  namespace, detached and ``setsid`` ones included. ``--die-with-parent`` does the same if the
  calling process dies.
* Identity: a non-root uid with no capabilities and no-new-privileges. When the caller is root,
  bwrap creates no user namespace and ``setpriv`` switches to a random unprivileged uid for the
  run, so RLIMIT_NPROC counts only this run's processes (root is exempt from it). Otherwise bwrap
  maps the caller to uid 65534 in a new user namespace (with bwrap 0.8 or later, one that cannot
  create further user namespaces).
* Limits (set by the runner before the code starts): address space, CPU seconds, file size, open
  files, no core files and, under bwrap, the number of processes. The environment is minimal and
  stdin is at end of file.

Verdict: the harness hands the runner a random token on stdin and the runner prints it on the
last stdout line only after the code (solution plus tests) has run to the end; the run passes only
when that exact line is there, whatever the exit status, so ``os._exit(0)`` or ``sys.exit(0)``
before the checks finish is a failure. Every wait is bounded by the timeout plus a short grace;
stdout and stderr go to size-capped files, never pipes that a leftover process could hold open.
Only the verdict and a short stderr tail (the last lines, sandbox paths and runner frames
removed) reach the result; what the code printed to stdout never does.

Not covered: no seccomp filter, so the kernel's full system-call surface is exposed; memory is
limited per process (RLIMIT_AS), not per run; the code can read whatever is world-readable under
``/usr`` and the interpreter prefix; with a root caller it can still create user namespaces of its
own (inside the same confinement); code that sets out to find the token in its own process can
forge a pass (the token guards against early exits, not against deliberate forgery).

Without working namespaces (no ``bwrap``, or it cannot create them here) ``run_python`` raises
:class:`SandboxUnavailableError` rather than running the code unconfined. ``isolation="weak"`` (or
``PROMPTOPT_SANDBOX=weak``) opts into the older rlimit-only mode: a plain ``python -I`` child in
a temp dir with the same limits (bar the process count), token verdict and bounded waits, but
the code can read the user's files, write outside its directory, use the network, signal the
caller and leave detached processes behind.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ISOLATION_ENV = "PROMPTOPT_SANDBOX"
ISOLATIONS = ("bwrap", "weak")

_TAIL_CHARS = 1500
_TAIL_LINES = 40
_READ_CAP = 64 * 1024  # bytes read back from the end of each output file
_FILE_LIMIT = 16 * 1024 * 1024
_OPEN_FILES = 64
_PROCESSES = 64
_TMPFS_BYTES = {"/sandbox": 64 * 1024 * 1024, "/tmp": 64 * 1024 * 1024, "/dev/shm": 16 * 1024 * 1024}
_KILL_GRACE_S = 5.0
_WORKDIR = "/sandbox"
# A random uid per run (root callers) keeps concurrent runs from sharing one process count.
_UID_RANGE = (1_500_000_000, 1_600_000_000)

_RUNNER = """\
import os, resource, runpy, socket, sys, _socket

def _no_network(*args, **kwargs):
    raise OSError("network access is disabled in the sandbox")

def _main():
    token = os.read(0, 256).strip()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    for name, value in LIMITS:
        resource.setrlimit(getattr(resource, name), value)
    for mod in (socket, _socket):
        for name in ("socket", "socketpair", "create_connection", "create_server", "fromfd"):
            if hasattr(mod, name):
                setattr(mod, name, _no_network)
    sys.argv = ["solution.py"]
    runpy.run_path("solution.py", run_name="__main__")
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os.write(1, b"\\n" + token + b"\\n")
    # Leftover threads or atexit hooks of the code must not turn a pass into a timeout.
    os._exit(0)

_main()
"""

_RUNNER_FILES = ("runner.py", "<frozen runpy>")
_FRAME = re.compile(r'^  File "([^"\n]*)", line \d+')


class SandboxUnavailableError(RuntimeError):
    """The namespace sandbox cannot run here; the message says why and how to fix it."""


@dataclass(frozen=True)
class SandboxResult:
    """``status`` is passed, failed, timeout or memory; ``stderr_tail`` the filtered end of stderr."""

    passed: bool
    status: str
    stderr_tail: str


def run_python(
    code: str, timeout_s: float = 10.0, memory_mb: int = 1024, *, isolation: str | None = None
) -> SandboxResult:
    """Run ``code`` as ``__main__``; it passes when it runs to the end (see the module docstring).

    ``isolation`` is ``"bwrap"`` (the default) or ``"weak"``; None reads ``$PROMPTOPT_SANDBOX``.
    Raises :class:`SandboxUnavailableError` when bwrap isolation is asked for but cannot work here.
    """
    mode = _isolation(isolation)
    token = secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="langprobe-sandbox-", ignore_cleanup_errors=True) as tmp:
        host = Path(tmp)
        limits = _limits(timeout_s, memory_mb, processes=mode == "bwrap")
        for name, text in (("solution.py", code), ("runner.py", _RUNNER.replace("LIMITS", repr(limits)))):
            host.joinpath(name).write_text(text, encoding="utf-8")
            host.joinpath(name).chmod(0o644)
        if mode == "bwrap":
            sandbox = _Bwrap.find()
            run = sandbox.run(host, [*sandbox.python_argv(), "runner.py"], token, timeout_s)
            paths = [_WORKDIR + "/", str(host) + "/"]
        else:
            run = _run_weak(host, token, timeout_s)
            paths = [str(host) + "/", os.path.realpath(host) + "/"]
    return _verdict(run, token, timeout_s, paths)


def _isolation(isolation: str | None) -> str:
    mode = (isolation or os.environ.get(ISOLATION_ENV) or "bwrap").strip().lower()
    if mode not in ISOLATIONS:
        raise ValueError(f"isolation must be one of {ISOLATIONS} (or ${ISOLATION_ENV}), got {mode!r}")
    return mode


def _limits(timeout_s: float, memory_mb: int, *, processes: bool) -> list[tuple[str, tuple[int, int]]]:
    memory = memory_mb * 1024 * 1024
    cpu = math.ceil(timeout_s) + 1
    limits = [
        ("RLIMIT_AS", (memory, memory)),
        ("RLIMIT_CPU", (cpu, cpu + 1)),
        ("RLIMIT_CORE", (0, 0)),
        ("RLIMIT_NOFILE", (_OPEN_FILES, _OPEN_FILES)),
        ("RLIMIT_FSIZE", (_FILE_LIMIT, _FILE_LIMIT)),
    ]
    if processes:
        # Only under bwrap: there the count covers this run alone; in weak mode it would count
        # every process of the calling user (and root ignores it anyway).
        limits.append(("RLIMIT_NPROC", (_PROCESSES, _PROCESSES)))
    return limits


@dataclass
class _Run:
    returncode: int | None  # None: still running at the timeout, then killed
    stdout: bytes
    stderr: bytes
    signal_offset: bool  # bwrap reports death by signal N as exit status 128 + N

    @classmethod
    def collect(cls, proc: subprocess.Popen, timed_out: bool, out_dir: Path, *, signal_offset: bool) -> _Run:
        code = None if timed_out else proc.returncode
        return cls(code, _tail(out_dir / "stdout"), _tail(out_dir / "stderr"), signal_offset)


def _launch(argv, cwd, env, token, out_dir: Path, pass_fds=(), start_new_session=False):
    """Start ``argv`` with the token on stdin and stdout/stderr in files under ``out_dir``."""
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, token.encode() + b"\n")
    finally:
        os.close(write_end)
    try:
        with open(out_dir / "stdout", "wb") as out, open(out_dir / "stderr", "wb") as err:
            return subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=read_end,
                stdout=out,
                stderr=err,
                pass_fds=pass_fds,
                start_new_session=start_new_session,
            )
    finally:
        os.close(read_end)


def _wait(proc: subprocess.Popen, timeout_s: float, kill) -> bool:
    """Wait up to ``timeout_s``; on timeout ``kill()`` and wait a short grace. True if it timed out."""
    try:
        proc.wait(timeout=timeout_s)
        return False
    except subprocess.TimeoutExpired:
        kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=_KILL_GRACE_S)
        return True


def _tail(path: Path, cap: int = _READ_CAP) -> bytes:
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - cap))
            return fh.read(cap)
    except OSError:
        return b""


def _run_weak(host: Path, token: str, timeout_s: float) -> _Run:
    out_dir = Path(tempfile.mkdtemp(prefix="out-", dir=host))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(host), "TMPDIR": str(host), "LANG": "C.UTF-8"}
    proc = _launch([sys.executable, "-I", "runner.py"], host, env, token, out_dir, start_new_session=True)

    def kill() -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    timed_out = _wait(proc, timeout_s, kill)
    kill()  # whatever the code left in its process group; detached sessions escape this
    return _Run.collect(proc, timed_out, out_dir, signal_offset=False)


# Sandbox set-ups that passed their trial run in this process, by (bwrap, setpriv, python, binds).
_CHECKED: dict[tuple, _Bwrap] = {}


class _Bwrap:
    """How to start the interpreter under bwrap on this machine, checked once per process."""

    def __init__(self, bwrap: str, setpriv: str | None, python: str, binds: list[str]):
        self.bwrap, self.setpriv, self.python, self.binds = bwrap, setpriv, python, binds
        self.options = _options(bwrap)

    @classmethod
    def find(cls) -> _Bwrap:
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise SandboxUnavailableError(_unavailable("bwrap (bubblewrap) is not installed or not on PATH"))
        setpriv = None
        if os.geteuid() == 0:
            # Looked up only where the sandbox also sees it: /usr and the /bin, /sbin links or binds.
            setpriv = shutil.which("setpriv", path="/usr/bin:/usr/sbin:/bin:/sbin")
            if setpriv is None:
                raise SandboxUnavailableError(
                    _unavailable("as root it needs util-linux's setpriv to drop to an unprivileged uid")
                )
        python, binds = _interpreter()
        key = (bwrap, setpriv, python, tuple(binds))
        if key not in _CHECKED:
            sandbox = cls(bwrap, setpriv, python, binds)
            sandbox._check()
            _CHECKED[key] = sandbox
        return _CHECKED[key]

    def python_argv(self) -> list[str]:
        return [self.python, "-I"]

    def argv(self, host: Path, command: list[str], info_fd: int) -> list[str]:
        uid = secrets.SystemRandom().randrange(*_UID_RANGE) if self.setpriv else 65534
        args = [self.bwrap, "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
        args += ["--unshare-cgroup-try", "--die-with-parent", "--new-session", "--hostname", "sandbox"]
        if not self.setpriv:
            args += ["--unshare-user", "--uid", str(uid), "--gid", str(uid)]
            if "--disable-userns" in self.options:  # bwrap 0.8 and later
                args += ["--disable-userns"]
        args += ["--ro-bind", "/usr", "/usr"]
        for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
            if os.path.islink(top):
                args += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                args += ["--ro-bind", top, top]
        made: set[str] = set()
        for path in self.binds:
            # bwrap copies the modes of the host's parents (/root is 0700), which would lock out
            # the sandbox's uid; the parents it creates hold nothing but the way to the bind.
            for parent in reversed(Path(path).parents[:-1]):
                if str(parent) not in made:
                    made.add(str(parent))
                    args += ["--perms", "0755", "--dir", str(parent)]
            args += ["--ro-bind", path, path]
        args += ["--proc", "/proc", "--dev", "/dev"]
        for path, size in _TMPFS_BYTES.items():
            if "--size" in self.options:
                args += ["--size", str(size)]
            args += ["--perms", "1777", "--tmpfs", path]
        for name in ("runner.py", "solution.py"):
            if host.joinpath(name).exists():
                args += ["--ro-bind", str(host / name), f"{_WORKDIR}/{name}"]
        args += ["--chdir", _WORKDIR, "--clearenv"]
        env = {"PATH": "/usr/bin:/bin", "HOME": _WORKDIR, "TMPDIR": "/tmp", "LANG": "C.UTF-8"}
        for key, value in env.items():
            args += ["--setenv", key, value]
        args += ["--info-fd", str(info_fd), "--"]
        if self.setpriv:
            args += [self.setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--no-new-privs"]
            args += ["--inh-caps=-all", "--bounding-set=-all", "--"]
        return args + command

    def run(self, host: Path, command: list[str], token: str, timeout_s: float) -> _Run:
        out_dir = Path(tempfile.mkdtemp(prefix="out-", dir=host))
        info_path = out_dir / "info.json"
        with open(info_path, "wb") as info:
            argv = self.argv(host, command, info.fileno())
            proc = _launch(argv, host, {"PATH": "/usr/bin:/bin"}, token, out_dir, pass_fds=(info.fileno(),))

        def kill() -> None:
            _kill_namespace(proc, info_path)

        timed_out = _wait(proc, timeout_s, kill)
        if proc.poll() is None:  # bwrap outlived its grace: take it down with its namespace
            kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=_KILL_GRACE_S)
        return _Run.collect(proc, timed_out, out_dir, signal_offset=True)

    def _check(self) -> None:
        """Start the interpreter once under the full set of options, so a machine where bwrap cannot
        create namespaces (a container without privileges, a kernel without user namespaces) is
        reported as such instead of failing every run as if the code were wrong."""
        token = secrets.token_hex(8)
        with tempfile.TemporaryDirectory(prefix="langprobe-sandbox-", ignore_cleanup_errors=True) as tmp:
            command = [*self.python_argv(), "-c", "import sys; print(sys.stdin.readline().strip())"]
            run = self.run(Path(tmp), command, token, 30.0)
        if run.returncode == 0 and run.stdout.strip().decode(errors="replace") == token:
            return
        why = run.stderr.decode("utf-8", "replace").strip()[-400:] or f"exit status {run.returncode}"
        raise SandboxUnavailableError(_unavailable(f"a trial run under {self.bwrap} failed: {why}"))


def _interpreter() -> tuple[str, list[str]]:
    """The real interpreter binary (a venv's python is only a link to it) and the read-only binds
    it needs beyond /usr and /lib*: its install prefix, wherever that is."""
    python = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    needed = {os.path.realpath(p) for p in (sys.base_prefix, sys.base_exec_prefix)} | {
        os.path.dirname(python)
    }
    binds: list[str] = []
    for path in sorted(needed):
        covered = any(path == b or path.startswith(b + "/") for b in (*binds, "/usr"))
        if not covered and os.path.isdir(path):
            binds.append(path)
    return python, binds


def _options(bwrap: str) -> frozenset[str]:
    """The options this bwrap knows, so that an older one still runs without the newer extras."""
    try:
        done = subprocess.run([bwrap, "--help"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    return frozenset(re.findall(r"--[a-z][a-z0-9-]*", (done.stdout + done.stderr).decode(errors="replace")))


def _kill_namespace(proc: subprocess.Popen, info_path: Path) -> None:
    """SIGKILL the sandbox's PID 1, which makes the kernel kill every process in its namespace, then
    bwrap itself (its child also dies with it, through --die-with-parent)."""
    child = _child_pid(info_path)
    if child is not None and proc.poll() is None:
        with contextlib.suppress(OSError):
            fd = os.pidfd_open(child)
            try:
                # The pid is still bwrap's child (not a recycled one) while bwrap has not reaped it.
                if _parent_of(child) == proc.pid:
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
            finally:
                os.close(fd)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()


def _child_pid(info_path: Path) -> int | None:
    match = re.search(rb'"child-pid"\s*:\s*(\d+)', _tail(info_path, 4096))
    return int(match.group(1)) if match else None


def _parent_of(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^PPid:\s*(\d+)", status, re.MULTILINE)
    return int(match.group(1)) if match else None


def _unavailable(reason: str) -> str:
    return (
        f"HumanEval's sandbox runs model-written code in Linux namespaces with bubblewrap, but {reason}. "
        "Install bubblewrap (as root: apt-get install bubblewrap, which scripts/setup.sh does), or opt "
        f"into the weaker rlimit-only sandbox, which does not keep the code from reading your files, "
        f"using the network or leaving processes behind, with run_python(..., isolation='weak') or "
        f"{ISOLATION_ENV}=weak."
    )


def _verdict(run: _Run, token: str, timeout_s: float, paths: list[str]) -> SandboxResult:
    lines = run.stdout.decode("utf-8", "replace").rstrip("\n").split("\n")
    tail = _filter_stderr(run.stderr.decode("utf-8", "replace"), paths)
    if lines[-1] == token:
        return SandboxResult(True, "passed", tail)
    if run.returncode is None:
        return SandboxResult(False, "timeout", f"timeout: still running after {timeout_s:g} s")
    rc = run.returncode
    sig = -rc if rc < 0 else rc - 128 if run.signal_offset and rc > 128 else 0
    if sig in (signal.SIGXCPU, signal.SIGKILL):
        return SandboxResult(False, "timeout", tail or f"timeout: CPU limit of {math.ceil(timeout_s)} s hit")
    if "MemoryError" in tail:
        return SandboxResult(False, "memory", tail)
    if tail:
        return SandboxResult(False, "failed", tail)
    if sig:
        return SandboxResult(False, "failed", f"killed by signal {sig} before the checks finished")
    return SandboxResult(False, "failed", f"exited with status {rc} before the checks finished")


def _filter_stderr(text: str, paths: list[str]) -> str:
    """The last lines of stderr without the runner's own frames or the sandbox's paths."""
    kept: list[str] = []
    skipping = False
    for line in text.splitlines():
        frame = _FRAME.match(line)
        if frame:
            skipping = os.path.basename(frame.group(1)) in _RUNNER_FILES
        elif skipping and not line.startswith("    "):
            skipping = False
        if not skipping:
            kept.append(line)
    tail = "\n".join(kept[-_TAIL_LINES:])
    for path in paths:
        tail = tail.replace(path, "")
    return tail[-_TAIL_CHARS:].strip()

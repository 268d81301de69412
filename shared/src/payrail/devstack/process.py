"""Child processes of the dev stack: started in their own process group, stopped for sure.

Every server (Kafka, PostgreSQL, localstripe, the services) runs as a :class:`ManagedProcess`:

* its own session/process group, so a Ctrl-C in the terminal reaches only the launcher, which
  then stops the children in order, and a stop signal reaches the child's own children too;
* stdout+stderr go line by line to a log file in the state folder and, optionally, to a sink
  (the launcher's coloured console), so a failure can always be explained by the log's tail;
* ``stop()`` sends the polite signal, waits, then SIGKILLs the whole group: nothing survives;
* a pid file lets the next run find and stop an orphan left by a launcher that was SIGKILLed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, NamedTuple, Self

log = logging.getLogger(__name__)

#: receives (process name, one line of its output)
LineSink = Callable[[str, str], None]

#: how often wait loops look at their condition, the children and the cancel flag
POLL_INTERVAL = 0.2


class ProcessFailed(RuntimeError):
    """A child exited while it was supposed to be starting or running."""

    def __init__(self, name: str, returncode: int | None, log_tail: str) -> None:
        super().__init__(
            f"{name} exited with code {returncode}; last lines of its log:\n{log_tail}"
        )
        self.name = name
        self.returncode = returncode
        self.log_tail = log_tail


class StartCancelled(RuntimeError):
    """Starting was abandoned because a stop was requested (Ctrl-C, SIGTERM)."""


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a text file ("" when it does not exist)."""
    try:
        with path.open("r", encoding="utf-8", errors="replace") as fh:
            return "".join(deque(fh, maxlen=lines)).rstrip("\n")
    except FileNotFoundError:
        return ""


def process_cmdline(pid: int) -> str | None:
    """The command line of a live process; None when there is none (or only a zombie)."""
    proc = Path("/proc") / str(pid) / "cmdline"
    if proc.parent.parent.is_dir():
        try:
            cmdline = proc.read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except (FileNotFoundError, ProcessLookupError):
            return None
        return cmdline or None
    result = subprocess.run(
        ["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, check=False
    )
    return result.stdout.strip() or None


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (zombies included: they still hold the pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the process group led by ``pid`` (children started with start_new_session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def stop_stale(
    pid: int,
    marker: str,
    what: str,
    sig: signal.Signals = signal.SIGTERM,
    timeout: float = 30.0,
) -> bool:
    """Stop an orphan left by an earlier run, if ``pid`` is still that program.

    ``marker`` must occur in the process's command line (e.g. its config path): a pid from an
    old file may have been reused by an unrelated process, which must not be touched.
    Returns True when an orphan was found (and is now gone).
    """
    cmdline = process_cmdline(pid)
    if cmdline is None or marker not in cmdline:
        return False
    log.warning("stopping %s (pid %d) left running by an earlier run", what, pid)
    _signal_group(pid, sig)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL)
    _signal_group(pid, signal.SIGKILL)
    while pid_alive(pid) and process_cmdline(pid) is not None:
        time.sleep(POLL_INTERVAL)
    return True


def run_command(
    argv: Sequence[str],
    *,
    what: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
    timeout: float | None = None,
) -> str:
    """Run a short command to completion; on failure raise with the tail of its output."""
    creds = _credentials(user)
    result = subprocess.run(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        timeout=timeout,
        check=False,
        user=creds.user,
        group=creds.group,
        extra_groups=creds.extra_groups,
    )
    if result.returncode != 0:
        last = "\n".join(result.stdout.splitlines()[-30:])
        raise RuntimeError(f"{what} failed (exit code {result.returncode}):\n{last}")
    return result.stdout


class _Credentials(NamedTuple):
    """Popen's user/group/extra_groups; all None means "stay who we are"."""

    user: int | None
    group: int | None
    extra_groups: list[int] | None


def _credentials(user: str | None) -> _Credentials:
    """Drop to ``user`` with its own group and none of root's supplementary groups."""
    if user is None:
        return _Credentials(None, None, None)
    entry = pwd.getpwnam(user)
    return _Credentials(entry.pw_uid, entry.pw_gid, [])


class ManagedProcess:
    """One long-running child process with logging, a pid file and a reliable stop."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
        stop_timeout: float = 30.0,
        pid_file: Path | None = None,
        sink: LineSink | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.pid_file = pid_file
        self._env = dict(env) if env is not None else None
        self._cwd = cwd
        self._user = user
        self._stop_signal = stop_signal
        self._stop_timeout = stop_timeout
        self._sink = sink
        self._popen: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    @property
    def returncode(self) -> int | None:
        """The exit code once the child has exited, else None."""
        return self._popen.poll() if self._popen is not None else None

    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def start(self) -> None:
        if self.running():
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        creds = _credentials(self._user)
        try:
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=self._env,
                cwd=self._cwd,
                start_new_session=True,
                user=creds.user,
                group=creds.group,
                extra_groups=creds.extra_groups,
            )
        except BaseException:
            log.close()
            raise
        assert self._popen.stdout is not None
        self._reader = threading.Thread(
            target=self._pump,
            args=(self._popen.stdout, log),
            name=f"{self.name}-output",
            daemon=True,
        )
        self._reader.start()
        if self.pid_file is not None:
            self.pid_file.parent.mkdir(parents=True, exist_ok=True)
            self.pid_file.write_text(f"{self._popen.pid}\n")

    def _pump(self, stream: IO[bytes], log: IO[bytes]) -> None:
        """Copy the child's output to its log file and the sink until the pipe closes."""
        with log, stream:
            for raw in stream:
                log.write(raw)
                log.flush()
                if self._sink is not None:
                    self._sink(self.name, raw.decode("utf-8", errors="replace").rstrip("\r\n"))

    def check_alive(self) -> None:
        """Raise :class:`ProcessFailed` (with the log's tail) if the child has exited."""
        if self._popen is not None and self._popen.poll() is not None:
            if self._reader is not None:
                self._reader.join(timeout=2)
            raise ProcessFailed(self.name, self._popen.returncode, self.log_tail())

    def log_tail(self, lines: int = 30) -> str:
        return tail(self.log_path, lines)

    def stop(self) -> None:
        """Polite signal to the group, wait, then SIGKILL the group; idempotent."""
        popen = self._popen
        if popen is None:
            return
        if popen.poll() is None:
            _signal_group(popen.pid, self._stop_signal)
            try:
                popen.wait(timeout=self._stop_timeout)
            except subprocess.TimeoutExpired:
                _signal_group(popen.pid, signal.SIGKILL)
                popen.wait()
        # the leader is gone; sweep anything it left in its group (workers, backends)
        _signal_group(popen.pid, signal.SIGKILL)
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self.pid_file is not None:
            self.pid_file.unlink(missing_ok=True)


def wait_until(
    ready: Callable[[], bool],
    *,
    what: str,
    timeout: float,
    processes: Sequence[ManagedProcess] = (),
    cancel: threading.Event | None = None,
) -> None:
    """Poll ``ready`` until it returns True.

    Fails fast, with the reason, when a watched child exits (:class:`ProcessFailed`), when a stop
    is requested (:class:`StartCancelled`), or after ``timeout`` seconds (:class:`TimeoutError`).
    """
    deadline = time.monotonic() + timeout
    while True:
        if cancel is not None and cancel.is_set():
            raise StartCancelled(f"stopped while waiting for {what}")
        for process in processes:
            process.check_alive()
        if ready():
            return
        if time.monotonic() >= deadline:
            logs = ", ".join(str(p.log_path) for p in processes)
            raise TimeoutError(
                f"{what} not ready after {timeout:.0f}s" + (f"; see {logs}" if logs else "")
            )
        time.sleep(POLL_INTERVAL)


class ManagedServer:
    """What Kafka, PostgreSQL and localstripe share: one child process, stop, ``with`` support.

    Subclasses implement ``start`` (which sets ``_process`` and waits until the server answers).
    """

    _process: ManagedProcess | None = None

    @property
    def process(self) -> ManagedProcess | None:
        """The server's process (None before ``start``)."""
        return self._process

    def start(self, timeout: float = 60.0, *, cancel: threading.Event | None = None) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the server's whole process group; its data stays on disk."""
        if self._process is not None:
            self._process.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

"""Run payrail services as real child processes in tests (the way `make run` runs them)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from payrail.devstack.paths import free_port


@dataclass
class ServiceProcess:
    module: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Poll /readyz until 200; fail with the service's log when it dies or never gets ready."""
        self._wait_for("/readyz", timeout)

    def wait_alive(self, timeout: float = 60.0) -> None:
        """Poll /healthz until 200 (serving, whatever its dependencies say)."""
        self._wait_for("/healthz", timeout)

    def _wait_for(self, route: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"{self.module} exited ({code}):\n{self.log()}")
            try:
                if httpx.get(f"{self.url}{route}", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{self.module}{route} not 200 after {timeout}s:\n{self.log()[-4000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@contextmanager
def service(
    module: str, env: Mapping[str, str], tmp_path: Path, *, ready: bool = True
) -> Iterator[ServiceProcess]:
    """Start ``python -m <module>`` on a free port with ``env``; stop it afterwards."""
    port = free_port()
    log_path = tmp_path / f"{module}-{port}.log"
    full_env = {**os.environ, **env, "PAYRAIL_HTTP_PORT": str(port)}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", module], env=full_env, stdout=log, stderr=subprocess.STDOUT
        )
    svc = ServiceProcess(module, port, proc, log_path)
    try:
        if ready:
            svc.wait_ready()
        yield svc
    finally:
        svc.stop()

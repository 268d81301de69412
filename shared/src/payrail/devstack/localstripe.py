"""localstripe: a fake, stateful Stripe API server (from PyPI) as the dev stack's gateway.

With it the real ``stripe`` SDK and real ``Stripe-Signature`` webhooks are exercised locally
without credentials. Its webhook targets live in memory only, so whoever starts it registers
them again (``register_webhook``) after every start.

It runs through :mod:`payrail.devstack.localstripe_server`, which adds Stripe's
``Idempotency-Key`` semantics (localstripe ignores the header) and keeps the objects in the state
folder (localstripe alone writes one ``/tmp`` file shared by every instance on the machine);
``from_scratch`` starts empty instead of loading them (what tests want).
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from pathlib import Path

import httpx
from pydantic import SecretStr

from payrail.devstack.paths import default_state_dir, require_free_port
from payrail.devstack.process import (
    LineSink,
    ManagedProcess,
    ManagedServer,
    stop_stale,
    wait_until,
)


def register_webhook(api_base: str, name: str, url: str, secret: SecretStr) -> None:
    """Make the localstripe at ``api_base`` POST every event, signed with ``secret``, to ``url``."""
    response = httpx.post(
        f"{api_base}/_config/webhooks/{name}",
        data={"url": url, "secret": secret.get_secret_value()},
        timeout=10.0,
    )
    response.raise_for_status()


#: the module that runs localstripe with Stripe's idempotency semantics
SERVER_MODULE = "payrail.devstack.localstripe_server"


class LocalStripe(ManagedServer):
    """A localstripe server on ``127.0.0.1:port``."""

    def __init__(
        self,
        port: int = 8420,
        *,
        state_dir: Path | None = None,
        from_scratch: bool = False,
        sink: LineSink | None = None,
    ) -> None:
        self.port = port
        state = (state_dir or default_state_dir()).resolve()
        self.log_path = state / "logs" / "localstripe.log"
        self.pid_file = state / "run" / "localstripe.pid"
        self.state_file = state / "localstripe" / "objects.pickle"
        self._from_scratch = from_scratch
        self._sink = sink

    @property
    def url(self) -> str:
        """Base URL of the fake Stripe API (the SDK's ``api_base``)."""
        return f"http://127.0.0.1:{self.port}"

    def _answers(self) -> bool:
        """Any HTTP answer counts (an unauthenticated API call gets a 401)."""
        try:
            httpx.get(f"{self.url}/v1/balance", timeout=2.0)
        except httpx.TransportError:
            return False
        return True

    def start(self, timeout: float = 30.0, *, cancel: threading.Event | None = None) -> None:
        if self._process is not None and self._process.running():
            return
        if importlib.util.find_spec("localstripe") is None:
            raise RuntimeError("localstripe is not installed; run `uv sync` (a dev dependency)")
        argv = [sys.executable, "-m", SERVER_MODULE, "--port", str(self.port)]
        if self.pid_file.is_file():
            stop_stale(int(self.pid_file.read_text()), " ".join(argv[-3:]), "localstripe")
        require_free_port(self.port, "localstripe", "PAYRAIL_LOCALSTRIPE_PORT")
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        argv += ["--state-file", str(self.state_file)]
        if self._from_scratch:
            argv.append("--from-scratch")
        self._process = ManagedProcess(
            "localstripe", argv, log_path=self.log_path, pid_file=self.pid_file, sink=self._sink
        )
        self._process.start()
        wait_until(
            self._answers,
            what=f"localstripe on {self.url}",
            timeout=timeout,
            processes=[self._process],
            cancel=cancel,
        )

    def register_webhook(self, name: str, url: str, secret: SecretStr) -> None:
        """Make localstripe POST every event, signed with ``secret``, to ``url``."""
        register_webhook(self.url, name, url, secret)

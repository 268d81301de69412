"""Where the dev stack keeps things, and how it finds free ports.

Downloads (the Kafka jars) go to a cache outside the repository so every clone and every test
run reuses them; mutable state (Kafka logs, the PostgreSQL cluster) goes to a state folder that
``make run`` keeps between runs and the tests create fresh.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

#: a file only the repository root has; used to find the root from an installed package
_ROOT_MARKER = Path("deploy") / "kafka" / "pom.xml"


def repo_root() -> Path:
    """The checkout this package runs from (searched upwards from the module, then the cwd).

    The workspace installs ``payrail`` in editable mode, so the module path leads to the repo;
    the cwd is the fallback for a non-editable install run from inside a checkout.
    """
    for start in (Path(__file__).resolve(), Path.cwd().resolve()):
        for candidate in (start, *start.parents):
            if (candidate / _ROOT_MARKER).is_file():
                return candidate
    raise FileNotFoundError(
        f"cannot find the payrail repository ({_ROOT_MARKER} above {Path(__file__)} or the "
        "current directory); run the dev stack from a checkout"
    )


def cache_dir() -> Path:
    """Downloads shared by every checkout: ``$PAYRAIL_CACHE_DIR`` or ``~/.cache/payrail``."""
    configured = os.environ.get("PAYRAIL_CACHE_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "payrail"


def default_state_dir() -> Path:
    """Data of the local stack: ``$PAYRAIL_STATE_DIR`` or ``<repo>/.state`` (git-ignored)."""
    configured = os.environ.get("PAYRAIL_STATE_DIR")
    return Path(configured).expanduser() if configured else repo_root() / ".state"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now.

    The kernel picks it, so two callers rarely collide; it is not reserved, so use it at once.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something already accepts connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def require_free_port(port: int, what: str, setting: str) -> None:
    """Fail with a helpful message when ``port`` is taken, before a server fails cryptically.

    It also prevents a false "ready": a readiness probe on a port that someone else serves
    would answer for the wrong server.
    """
    if port_in_use(port):
        raise RuntimeError(
            f"port {port} for {what} is already in use (another `payrail dev run`?); stop what "
            f"listens there or choose another port with {setting}"
        )

"""The one outbound-call policy every gateway client follows.

Why one policy: the lessons of a payment integration are the same for every gateway and are easy
to get subtly wrong per client. A call to a gateway

* has a per-attempt deadline (``timeout``) so a hung gateway cannot hold a request forever;
* is retried, with exponential backoff and full jitter, on timeouts, connection errors, HTTP 5xx,
  409 (an identical request still in flight) and 429, never sooner than ``Retry-After`` says; a
  ``Retry-After`` beyond ``retry_after_max`` ends the call instead (outcome unknown, the janitor
  comes back later);
* is bounded in attempts and in total time (``max_attempts``, ``max_elapsed``);
* carries the caller's idempotency key unchanged on every attempt (the clients build the request
  once, outside the retry loop, so a retry is byte-for-byte the same request);
* ends in exactly one of three ways besides success:
  :class:`~payrail.gateways.base.GatewayDeclined` - the gateway answered no (4xx): definite;
  :class:`~payrail.gateways.base.GatewayTimeout` - the last attempt timed out: the gateway may
  have acted, the outcome is *unknown*, never "failed";
  :class:`~payrail.gateways.base.GatewayUnavailable` - retries exhausted on 5xx / 429 /
  connection errors: also unknown, resolved later by a status sync or an idempotent retry.

Library adapters (httpx, ``requests`` used by the Razorpay SDK and the Adyen library, the stripe
SDK) turn their own failures into :class:`Transient` (retry) or a ``GatewayError`` (stop) inside
the attempt; :func:`call` owns the loop. Attempts are logged with structlog: gateway, operation,
attempt number, HTTP status, wait and idempotency key - never credentials or request bodies.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import aiohttp
import httpx
import requests
import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)

from payrail.gateways.base import (
    GatewayAccountConfig,
    GatewayDeclined,
    GatewayError,
    GatewayTimeout,
    GatewayUnavailable,
)

T = TypeVar("T")

log = structlog.get_logger("payrail.gateways.http")

# HTTP statuses worth another attempt with the same idempotency key: the gateway is overloaded or
# broken (5xx), rate limiting (429), or still processing an identical request (409).
_RETRYABLE_4XX = frozenset({409, 429})


class Transient(Exception):
    """An attempt failed in a way that is safe to repeat with the same idempotency key.

    Raised inside an attempt; :func:`call` retries it and, when the policy is exhausted, turns the
    last one into ``GatewayTimeout`` (``timed_out``) or ``GatewayUnavailable``.
    """

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        timed_out: bool = False,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.retry_after = retry_after
        self.timed_out = timed_out


class GatewayNotFound(GatewayDeclined):
    """The gateway does not know the object (HTTP 404): definite, and useful to status syncs."""


def _positive(options: Mapping[str, str], key: str, default: float) -> float:
    raw = options.get(key)
    if raw is None:
        return default
    value = float(raw)
    if value <= 0:
        raise ValueError(f"gateway option {key} must be positive, got {raw!r}")
    return value


@dataclass(frozen=True, slots=True)
class CallPolicy:
    """Timeouts and retry bounds of one gateway account.

    ``sleep`` is how the policy waits between attempts; tests replace it to observe the waits
    (e.g. that ``Retry-After`` was honoured) without slowing down or timing anything.
    """

    timeout: float = 10.0
    max_attempts: int = 4
    max_elapsed: float = 30.0
    backoff_initial: float = 0.25
    backoff_max: float = 4.0
    retry_after_max: float = 10.0
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, compare=False)

    @classmethod
    def for_account(cls, config: GatewayAccountConfig) -> CallPolicy:
        """The policy of an account: ``timeout_seconds`` plus optional ``options`` overrides.

        Options (strings, as everything in ``options``): ``retry_max_attempts``,
        ``retry_max_seconds``, ``retry_backoff_initial``, ``retry_backoff_max``,
        ``retry_after_max`` (seconds).
        """
        options, default = config.options, cls()
        return cls(
            timeout=config.timeout_seconds,
            max_attempts=int(_positive(options, "retry_max_attempts", default.max_attempts)),
            max_elapsed=_positive(options, "retry_max_seconds", default.max_elapsed),
            backoff_initial=_positive(options, "retry_backoff_initial", default.backoff_initial),
            backoff_max=_positive(options, "retry_backoff_max", default.backoff_max),
            retry_after_max=_positive(options, "retry_after_max", default.retry_after_max),
        )

    def _wait(self, state: RetryCallState) -> float:
        """Jittered exponential backoff, but never sooner than the gateway's ``Retry-After``."""
        delay = float(
            wait_random_exponential(multiplier=self.backoff_initial, max=self.backoff_max)(state)
        )
        failure = state.outcome.exception() if state.outcome is not None else None
        if isinstance(failure, Transient) and failure.retry_after is not None:
            delay = max(delay, failure.retry_after)
        return delay

    def _retryable(self, failure: BaseException) -> bool:
        """A ``Transient`` failure, unless the gateway asks to wait longer than we are willing to:
        then the call ends now (unknown outcome) rather than retry sooner than asked."""
        return isinstance(failure, Transient) and (
            failure.retry_after is None or failure.retry_after <= self.retry_after_max
        )


async def call(
    policy: CallPolicy,
    gateway: str,
    operation: str,
    attempt: Callable[[], Awaitable[T]],
    *,
    idempotency_key: str | None = None,
) -> T:
    """Run ``attempt`` under ``policy``: a deadline per attempt, bounded retries of ``Transient``.

    ``attempt`` must send the very same request each time (same idempotency key); anything it
    raises that is neither ``Transient`` nor a ``GatewayError`` is a bug and propagates as is.
    """
    bound = log.bind(gateway=gateway, operation=operation, idempotency_key=idempotency_key)

    async def one_attempt() -> T:
        try:
            async with asyncio.timeout(policy.timeout):
                return await attempt()
        except TimeoutError as exc:
            raise Transient(f"no answer within {policy.timeout:g}s", timed_out=True) from exc

    def before_sleep(state: RetryCallState) -> None:
        failure = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else None
        bound.warning(
            "gateway call failed, retrying",
            attempt=state.attempt_number,
            status=getattr(failure, "status", None),
            reason=str(failure),
            wait_seconds=round(wait, 3) if wait is not None else None,
        )

    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.max_attempts) | stop_before_delay(policy.max_elapsed),
        wait=policy._wait,
        retry=retry_if_exception(policy._retryable),
        before_sleep=before_sleep,
        sleep=policy.sleep,
        reraise=True,
    )
    try:
        result: T = await retrying(one_attempt)
    except Transient as exc:
        attempts = retrying.statistics.get("attempt_number")
        bound.warning(
            "gateway call gave up, outcome unknown",
            attempts=attempts,
            status=exc.status,
            reason=exc.detail,
        )
        message = f"{gateway} {operation}: {exc.detail} after {attempts} attempt(s)"
        if exc.timed_out:
            raise GatewayTimeout(f"{message}; the outcome is unknown") from exc
        raise GatewayUnavailable(message) from exc
    except GatewayError as exc:
        bound.info("gateway call refused", error=type(exc).__name__, reason=str(exc))
        raise
    return result


# ------------------------------------------------------------------------- classification


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), if any."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def status_failure(
    status: int,
    *,
    gateway: str,
    detail: str,
    code: str | None = None,
    retry_after: str | None = None,
) -> Transient | GatewayError:
    """The error for a non-2xx answer: ``Transient`` for 5xx/409/429, a definite error otherwise."""
    message = f"{gateway} answered HTTP {status}: {detail}"
    if status >= 500 or status in _RETRYABLE_4XX:
        return Transient(message, status=status, retry_after=parse_retry_after(retry_after))
    if status == 404:
        return GatewayNotFound(message, code=code or "not_found")
    return GatewayDeclined(message, code=code or f"http_{status}")


def transport_failure(exc: BaseException, *, gateway: str) -> Transient:
    """A ``Transient`` for a network-level failure of httpx, aiohttp or requests.

    A failure while connecting means the request never left; a read timeout means it may have
    been acted on - both are retried with the same key, and a final timeout surfaces as
    ``GatewayTimeout`` (outcome unknown).
    """
    name = type(exc).__name__
    connect_phase = isinstance(
        exc,
        httpx.ConnectError
        | httpx.ConnectTimeout
        | httpx.PoolTimeout
        | aiohttp.ClientConnectorError
        | aiohttp.ConnectionTimeoutError
        | requests.exceptions.ConnectTimeout,
    )
    timed_out = not connect_phase and isinstance(
        exc,
        httpx.TimeoutException
        | aiohttp.ServerTimeoutError
        | requests.exceptions.Timeout
        | TimeoutError,
    )
    what = "timed out" if timed_out else "unreachable"
    return Transient(f"{gateway} {what} ({name})", timed_out=timed_out)

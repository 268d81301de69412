"""The janitor as a component of the checkout process (see :mod:`checkout.service_layer.janitor`).

Every checkout instance runs it unless ``PAYRAIL_JANITOR_ENABLED=false``; instances share the work
through the database claim (``FOR UPDATE SKIP LOCKED``), so running it everywhere is safe and
needs no leader. It starts after the ``checkout`` component, whose store and gateways it uses.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from checkout.service_layer.gateways import Gateways
from checkout.service_layer.janitor import Janitor, JanitorTiming, Schedule
from checkout.service_layer.unit_of_work import Store
from checkout.settings import CheckoutSettings
from payrail.logging import get_logger

log = get_logger(__name__)


def janitor_timing(settings: CheckoutSettings) -> JanitorTiming:
    """The janitor's schedule and pace from ``PAYRAIL_JANITOR_*`` (a bad schedule fails start)."""
    return JanitorTiming(
        schedule=Schedule.parse(settings.janitor_schedule),
        poll_interval=settings.janitor_poll_interval_seconds,
        batch=settings.janitor_batch_size,
    )


@asynccontextmanager
async def janitor(app: FastAPI) -> AsyncIterator[None]:
    """Run the janitor's loop for the life of the process."""
    settings: CheckoutSettings = app.state.settings
    timing = janitor_timing(settings)
    if not settings.janitor_enabled:
        log.info("janitor disabled in this instance")
        yield
        return
    store: Store = app.state.checkout_store
    gateways: Gateways = app.state.gateways
    runner = Janitor(store, gateways, timing)
    app.state.janitor = runner
    log.info("janitor started", schedule=timing.schedule.describe())
    async with asyncio.TaskGroup() as group:
        loop = group.create_task(runner.run_forever(), name="checkout-janitor")
        try:
            yield
        finally:
            loop.cancel()

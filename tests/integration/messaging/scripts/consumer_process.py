"""A consumer process for the crash tests (``python -m <this module>``).

It runs an inbox consumer whose handler records an effect row. With ``--kill-after-commit`` the
handler installs an after-commit hook on its session that SIGKILLs the process: the effect is
committed in PostgreSQL and the Kafka offset is not, the worst moment for exactly-once.
The fault is injected here, by the test's handler, not by the library.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from payrail.contracts import PaymentIntentRequested
from payrail.messaging.consumer import ConsumerSpec
from payrail.messaging.envelope import Envelope
from payrail.messaging.service import ServiceMessaging
from tests.integration.messaging.support import apply_effect


def _die(_: Session) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


async def main(args: argparse.Namespace) -> None:
    engine = create_async_engine(args.database_url)

    async def handle(session: AsyncSession, envelope: Envelope[PaymentIntentRequested]) -> None:
        await apply_effect(session, args.schema, args.name, envelope)
        if args.kill_after_commit:
            event.listen(session.sync_session, "after_commit", _die)
        print(f"handled {envelope.data.payment_id}", flush=True)

    messaging = ServiceMessaging(
        service="crash-test",
        bootstrap_servers=args.bootstrap,
        engine=engine,
        schema=args.schema,
        relay=False,
    )
    spec = ConsumerSpec(args.name, args.group, (args.topic,), PaymentIntentRequested, handle)
    messaging.consume(spec)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with messaging:
        print("consuming", flush=True)
        await stop.wait()
    await engine.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    for option in ("--bootstrap", "--database-url", "--schema", "--topic", "--group", "--name"):
        parser.add_argument(option, required=True)
    parser.add_argument("--kill-after-commit", action="store_true")
    asyncio.run(main(parser.parse_args()))

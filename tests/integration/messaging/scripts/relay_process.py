"""A relay process for the crash tests (``python -m <this module>``).

With ``--kill-before-mark`` an engine hook SIGKILLs the process when the relay is about to mark
rows published, i.e. after Kafka acknowledged them and before the database knows: the moment a
relay crash would lose events if marking came first. The fault is injected here, not in the
library.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import create_async_engine

from payrail.messaging.relay import OutboxRelay


def _die_before_marking(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
    if statement.lstrip().startswith("UPDATE") and "published_at" in statement:
        os.kill(os.getpid(), signal.SIGKILL)


async def main(args: argparse.Namespace) -> None:
    engine = create_async_engine(args.database_url)
    if args.kill_before_mark:
        event.listen(engine.sync_engine, "before_cursor_execute", _die_before_marking)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with OutboxRelay(
        engine, args.schema, bootstrap_servers=args.bootstrap, poll_interval=0.2
    ):
        print("relaying", flush=True)
        await stop.wait()
    await engine.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    for option in ("--bootstrap", "--database-url", "--schema"):
        parser.add_argument(option, required=True)
    parser.add_argument("--kill-before-mark", action="store_true")
    asyncio.run(main(parser.parse_args()))

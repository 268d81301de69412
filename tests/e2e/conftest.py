"""The end-to-end suite's platform: started once for the package, stopped after it.

Package scope (not session): the services join the consumer groups named after them
(``checkout``, ``entitlements``...), so they must be gone before other test packages start their
own instances of the same services on the same broker.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.stack import Stack, WebhookRecorder


@pytest.fixture(scope="package")
def stack(
    kafka_bootstrap: str,
    database_url: str,
    localstripe_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    recorder = WebhookRecorder()
    platform = Stack(
        kafka_bootstrap=kafka_bootstrap,
        database_url=database_url,
        localstripe_url=localstripe_url,
        logs=tmp_path_factory.mktemp("e2e-logs"),
        recorder=recorder,
    )
    try:
        platform.start_all()
        yield platform
    finally:
        platform.stop_all()
        recorder.close()

"""`python -m rb_notifier`: the notifier service alone, configured from RB_* variables, until
SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from rb_common import logs, tracing
from rb_common.secrets import renamed_notices
from rb_common.settings import Settings
from rb_notifier.service import run_notifier


def main() -> None:
    settings = Settings()
    logs.configure(settings, "notifier")
    tracing.setup(settings, "notifier")
    for notice in renamed_notices(os.environ):
        logging.getLogger("rb_notifier").warning("%s", notice)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_notifier(settings, stop)

    try:
        asyncio.run(run())
    finally:
        tracing.shutdown()


if __name__ == "__main__":
    main()

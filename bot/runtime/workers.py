"""`run` with `[runtime] workers` > 1: N worker processes serve one webhook port.

Each worker is `python -m bot run` with `[runtime] worker` set to its number:
a replica of its own (its pools, cache listener and L1, jobs that take their
turn through the job lock), so it is exactly what two replicas on two machines
are, and the replica-mode guarantees (an update handled once, one user's
updates in order) hold between workers too. They all bind the webhook port
with SO_REUSEPORT and the kernel spreads Telegram's connections over them, so
one machine's cores all serve. Worker i has its /metrics and /healthz on
`[observability] http_port` + i - 1.

This process only starts the workers and waits: SIGTERM or SIGINT is passed to
every worker (each finishes its updates in flight), and a worker that exits on
its own stops the others, so the process manager restarts the whole set with
a non-zero status rather than serving on with fewer workers than configured.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from contextlib import suppress
from pathlib import Path

from bot.config import Config

log = logging.getLogger(__name__)


def worker_command(config_path: Path | None) -> list[str]:
    return [sys.executable, "-m", "bot", "run"] + (
        ["--config", str(config_path)] if config_path is not None else []
    )


def worker_environment(config: Config, number: int) -> dict[str, str]:
    """What worker `number` (1..workers) is told on top of this process's environment."""
    side_port = config.observability.http_port
    return {
        **os.environ,
        "ESCROW__RUNTIME__WORKER": str(number),
        "ESCROW__OBSERVABILITY__HTTP_PORT": str(side_port + number - 1 if side_port else 0),
    }


def supervise(config: Config, config_path: Path | None = None) -> int:
    """Start the workers and wait for them all; the worst exit status."""
    if not config.telegram.token or config.telegram.mode != "webhook":
        log.error(
            "[runtime] workers = %d needs webhook mode with a token: polling allows one "
            "getUpdates reader per bot, and local mode is one process",
            config.runtime.workers,
        )
        return 2
    command = worker_command(config_path)
    running: dict[int, int] = {}  # pid -> worker number
    for number in range(1, config.runtime.workers + 1):
        process = subprocess.Popen(command, env=worker_environment(config, number))
        running[process.pid] = number
    log.info("%d workers on port %d", len(running), config.telegram.webhook_port)
    stopping = False
    status = 0

    def stop_all() -> None:
        for pid in running:
            with suppress(ProcessLookupError):  # exited, not yet waited for
                os.kill(pid, signal.SIGTERM)

    def on_signal(sig: int, _frame: object) -> None:
        nonlocal stopping
        if not stopping:
            log.info("%s: stopping the workers", signal.Signals(sig).name)
        stopping = True
        stop_all()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while running:
            pid, wait_status = os.wait()  # resumed after a signal's handler (PEP 475)
            number = running.pop(pid, None)
            if number is None:
                continue
            code = os.waitstatus_to_exitcode(wait_status)
            if not stopping:
                log.error("worker %d exited (%d): stopping the others", number, code)
                stopping = True
                status = max(status, code if code > 0 else 1)
                stop_all()
            status = max(status, code if code >= 0 else 128 - code)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status

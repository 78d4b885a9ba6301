"""alive_worker.pglog for the runner: the policy's loggers are logging's own, at the runner's --log-level.

The worker's pglog writes to the server log through the embedding library,
which a client process cannot load; install_transport puts this module in
its place, as client_spi takes alive_worker.spi's.
"""

from __future__ import annotations

import logging

# What a hook's records are given as context in the worker; none here.
hook_context = ""


def getLogger(name: str) -> logging.Logger:
    return logging.getLogger(name)


def debug_enabled() -> bool:
    return logging.getLogger().isEnabledFor(logging.DEBUG)

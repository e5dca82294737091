"""Logging set-up for entry points (library modules only create their own loggers)."""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def setup_logging(level: str) -> None:
    """Configure the root logger once, to stderr, at ``level`` (debug, info, warning, ...)."""
    logging.basicConfig(
        level=getattr(logging, level.upper()), format=FORMAT, stream=sys.stderr, force=True
    )
    # Client libraries are chatty at INFO about every (re)connection attempt.
    for noisy in ("aiokafka", "kafka"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.root.level))

"""Logging set-up shared by every process: one line per record, level from LOG_LEVEL."""

import logging


def configure(level: str) -> None:
    """Log to stderr at `level`; secrets never reach a record (config.secret.Secret prints '<redacted>')."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)

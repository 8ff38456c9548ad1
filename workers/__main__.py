"""`python -m workers`: the Procfile's worker process, an RQ worker that does not fork per job.

RQ's default Worker forks for every job (~12 ms of CPU each here); SimpleWorker runs jobs in
this process (~3 ms). SIGTERM asks for a warm shutdown: the job in hand finishes, then it exits.
"""

import argparse
import sys

from rq import Queue, SimpleWorker
from rq.serializers import JSONSerializer

from config.errors import ConfigError
from config.loader import load
from relay import logs
from relay.inbox import QUEUE_NAME
from relay.redis_conn import connect


def main(argv: list[str] | None = None) -> int:
    """Check settings and config, then work the events queue until told to stop."""
    parser = argparse.ArgumentParser(prog="python -m workers", description=__doc__.splitlines()[0])
    parser.add_argument("--burst", action="store_true", help="exit once the queue is empty")
    args = parser.parse_args(argv)
    try:
        settings, _config = load()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    logs.configure(settings.log_level)
    redis = connect(settings.redis_url)
    queue = Queue(QUEUE_NAME, connection=redis, serializer=JSONSerializer)
    worker = SimpleWorker([queue], connection=redis, serializer=JSONSerializer)
    worker.work(burst=args.burst, logging_level=settings.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Racers for the tests that prove a step is taken once: threads, each with a Redis client of its
own, all starting at once, each repeating its step until the step finds nothing more."""

import threading
from collections.abc import Callable

from redis import Redis

from config.settings import Settings
from relay.store.connection import connect


def race(redis_url: str, racers: int, step: Callable[[Redis, int, int], list], timeout: float = 60) -> list[list]:
    """Run `step(client, racer, call)` in `racers` threads until it returns []; return what each
    racer's steps returned, in order. Any exception in a racer fails the caller."""
    clients = [connect(Settings.from_env({"REDIS_URL": redis_url}).redis_url) for _ in range(racers)]
    found: list[list] = [[] for _ in range(racers)]
    errors: list[BaseException] = []
    start = threading.Barrier(racers)

    def run(n: int) -> None:
        try:
            start.wait()
            call = 0
            while items := step(clients[n], n, call):
                found[n].extend(items)
                call += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    for client in clients:
        client.close()
    assert errors == [], errors
    assert not any(thread.is_alive() for thread in threads), f"racers still running after {timeout} s"
    return found

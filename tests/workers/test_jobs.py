"""The names of the relay's RQ jobs (relay/store/jobs.py) are stored with every queued and
scheduled job in Redis: each must still resolve, by importing its dotted path as RQ's worker does,
to a function that takes the arguments those jobs carry. A rename would strand them."""

import importlib
import inspect

import pytest
from rq.utils import import_attribute

from relay.store import jobs

# Each job name, with arguments as the code queues them (relay/store/jobs.py retry_job,
# relay/store/destination_state.py, workers/sweeper.py; FANOUT only from earlier versions).
QUEUED_WITH = {
    "FANOUT": ({"v": 1, "id": "wms:s:0", "source": "wms", "received_at": 0.0, "body": "{}"},),
    "RETRY": ("wms:s:0", "crm", 2, 0),
    "SWEEP": (),
    "PROBE": ("crm",),
    "ANNOUNCE": ("ops-slack is paused",),
}


def test_every_job_name_is_checked_here():
    # The dotted names jobs.py defines; a new one needs its arguments above.
    names = {name for name, value in vars(jobs).items() if name.isupper() and isinstance(value, str) and "." in value}
    assert names == set(QUEUED_WITH)


@pytest.mark.parametrize(("name", "args"), QUEUED_WITH.items(), ids=QUEUED_WITH.keys())
def test_a_job_name_resolves_to_a_function_taking_its_arguments(name, args):
    dotted = getattr(jobs, name)
    module_name, _, attribute = dotted.rpartition(".")
    module = importlib.import_module(module_name)
    assert hasattr(module, attribute), f"jobs.{name} = {dotted!r}: {module_name} has no {attribute!r}"
    func = getattr(module, attribute)
    assert callable(func), f"jobs.{name} = {dotted!r} is not callable"
    assert import_attribute(dotted) is func  # what RQ's worker runs for a job of that name
    try:
        inspect.signature(func).bind(*args)
    except TypeError as exc:
        raise AssertionError(f"jobs.{name} = {dotted!r} cannot take the arguments its jobs carry: {exc}") from None

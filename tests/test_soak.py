"""The chaos soak of `./dev bench chaos`, shortened (bench/chaos.py, --quick): signed events at
100/s for 8 s through the Procfile's web process and two workers, with a Slack-shaped endpoint,
an SMTP server and a callback receiver on loopback, while one worker is killed with SIGKILL (and
replaced), the callback receiver restarts, and Redis stops for 2 s and comes back from its AOF.

It proves each fault happened before it proves that nothing accepted was lost through them."""

import json
import signal
from pathlib import Path

import pytest

from bench import chaos
from bench.__main__ import _print_chaos

pytestmark = pytest.mark.slow  # runs the Procfile's processes, a Redis and three receivers


def test_nothing_accepted_is_lost_through_a_worker_kill_a_receiver_restart_and_a_redis_stop(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = chaos.run(tmp_path / "chaos", chaos.plan(quick=True))
    facts = json.dumps(report, indent=1)
    # The worker was killed, gone, and its replacement running before Redis stopped.
    killed = report["killed_worker"]
    assert killed["returncode"] == -signal.SIGKILL and killed["gone"] and killed["replacement_started"], facts
    # The receiver's restart refused attempts, and every event refused was delivered afterwards.
    restart = report["receiver_restart"]
    assert restart["failed_events"] > 0 and restart["later_delivered"] == restart["failed_events"], facts
    # Redis stopped: the sender was answered 503, never a 2xx for what it sent while Redis was gone.
    assert report["refused_503_while_redis_down"] > 0 and report["accepted_while_redis_down"] == 0, facts
    assert report["other_5xx"] == 0, facts
    # Every worker thread lived through it all (a dead lane sends nothing more, silently).
    assert report["crashed_threads"] == {}, facts
    # Every event was accepted once (the 503s retried), and its deliberate resend answered 200.
    assert report["never_accepted"] == 0 and report["accepted"] == report["events"], facts
    assert report["accepted_twice"] == 0 and report["duplicates_answered"] >= report["resent"] > 0, facts
    # Every accepted event reached each destination its rule names, and none any other.
    for name, figures in report["destinations"].items():
        assert figures["expected"] > 0 and figures["delivered"] == figures["expected"], (name, facts)
        assert figures["unexpected"] == 0 and figures["dead_letters"] == 0, (name, facts)
    assert report["lost"] == 0 and report["ok"], facts
    _print_chaos(report)
    assert "[target nothing accepted lost, no 5xx but 503: met]" in capsys.readouterr().out

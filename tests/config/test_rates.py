"""Rates in config (config/rates.py) and the sending keys that use them: `rate_limit` and
`concurrency` of a destination, loaded and refused with exact messages."""

from pathlib import Path

import pytest

from config.destinations import DEFAULT_CONCURRENCY
from config.errors import ConfigError
from config.loader import load_config
from config.rates import Rate, parse_rate

EXPECTED = "must be a rate like '1/s', '20/min' or '500/h', got "


@pytest.mark.parametrize(
    "text, count, period, interval, shown",
    [
        ("1/s", 1.0, 1.0, 1.0, "1/s"),
        ("20/min", 20.0, 60.0, 3.0, "20/min"),
        ("500/h", 500.0, 3600.0, 7.2, "500/h"),
        ("2.5/s", 2.5, 1.0, 0.4, "2.5/s"),
        (" 10 / sec ", 10.0, 1.0, 0.1, "10/s"),
        ("3/hour", 3.0, 3600.0, 1200.0, "3/h"),
        ("1/m", 1.0, 60.0, 60.0, "1/min"),
        ("1/S", 1.0, 1.0, 1.0, "1/s"),
        ("0.5/minute", 0.5, 60.0, 120.0, "0.5/min"),
    ],
)
def test_parse_rate_accepts(text, count, period, interval, shown):
    rate = parse_rate(text)
    assert rate == Rate(count, period)
    assert rate.interval == pytest.approx(interval)
    assert str(rate) == shown
    assert parse_rate(rate) is rate  # already parsed: kept


@pytest.mark.parametrize(
    "value, message",
    [
        ("fast", EXPECTED + "'fast'"),
        ("0/s", "must be a positive rate, got '0/s'"),
        ("0.0/min", "must be a positive rate, got '0.0/min'"),
        ("-1/s", EXPECTED + "'-1/s'"),
        ("1/day", EXPECTED + "'1/day'"),
        ("1e3/s", EXPECTED + "'1e3/s'"),
        ("1/", EXPECTED + "'1/'"),
        ("", EXPECTED + "''"),
        (5, EXPECTED + "5"),
        (1.5, EXPECTED + "1.5"),
        (None, EXPECTED + "None"),
        (True, EXPECTED + "True"),
    ],
)
def test_parse_rate_refuses(value, message):
    with pytest.raises(ValueError) as exc:
        parse_rate(value)
    assert str(exc.value) == message


CRM = 'sources: {wms: {mac_secrets: [s]}}\ndestinations:\n  crm: {type: http, url: "https://crm.example.com/in", signing_secret: s%s}\n'


def write(tmp_path: Path, extra: str) -> str:
    path = tmp_path / "relay.yaml"
    path.write_text(CRM % extra, encoding="utf-8")
    return str(path)


def test_a_destination_loads_its_rate_limit_and_concurrency(tmp_path):
    crm = load_config(write(tmp_path, ", rate_limit: 20/min, concurrency: 4"), {}).destinations["crm"]
    assert crm.rate_limit == Rate(20.0, 60.0)
    assert crm.rate_limit.interval == 3.0
    assert crm.concurrency == 4


def test_a_destination_has_no_rate_limit_and_the_default_concurrency_unless_set(tmp_path):
    crm = load_config(write(tmp_path, ""), {}).destinations["crm"]
    assert crm.rate_limit is None
    assert crm.concurrency == DEFAULT_CONCURRENCY == 8
    assert load_config(write(tmp_path, ", rate_limit: null"), {}).destinations["crm"].rate_limit is None


@pytest.mark.parametrize("concurrency", [1, 256])
def test_concurrency_bounds_are_allowed(tmp_path, concurrency):
    crm = load_config(write(tmp_path, f", concurrency: {concurrency}"), {}).destinations["crm"]
    assert crm.concurrency == concurrency


@pytest.mark.parametrize(
    "extra, problem",
    [
        (", rate_limit: 1/day", "destinations.crm.rate_limit: " + EXPECTED + "'1/day'"),
        (", rate_limit: fast", "destinations.crm.rate_limit: " + EXPECTED + "'fast'"),
        (", rate_limit: 0/s", "destinations.crm.rate_limit: must be a positive rate, got '0/s'"),
        (", rate_limit: 5", "destinations.crm.rate_limit: " + EXPECTED + "5"),
        (", rate_limit: [1/s]", "destinations.crm.rate_limit: " + EXPECTED + "['1/s']"),
        (", concurrency: 0", "destinations.crm.concurrency: must be at least 1, got 0"),
        (", concurrency: 257", "destinations.crm.concurrency: must be at most 256, got 257"),
        (", concurrency: 2.5", "destinations.crm.concurrency: must be an integer, got 2.5"),
        (", concurrency: many", "destinations.crm.concurrency: must be an integer, got 'many'"),
    ],
)
def test_a_bad_rate_limit_or_concurrency_is_reported_with_its_path(tmp_path, extra, problem):
    path = write(tmp_path, extra)
    with pytest.raises(ConfigError) as exc:
        load_config(path, {})
    assert exc.value.problems == [f"{path}: {problem}"]


def test_a_rate_limit_from_a_variable_is_checked_too(tmp_path):
    path = write(tmp_path, ', rate_limit: "${CRM_RATE:-2/s}"')
    assert load_config(path, {}).destinations["crm"].rate_limit == Rate(2.0, 1.0)
    with pytest.raises(ConfigError) as exc:
        load_config(path, {"CRM_RATE": "lots"})
    assert exc.value.problems == [f"{path}: destinations.crm.rate_limit: " + EXPECTED + "'lots'"]

"""load_config: each testdata file's exact problems, the shipped config files, and ${VAR} expansion."""

import re
from pathlib import Path

import pytest

import config
from config.errors import ConfigError
from config.loader import load_config
from config.model import Ingest

TESTDATA = Path(__file__).parent / "testdata"
CONFIG_DIR = Path(config.__file__).parent
# testdata/unset_variable.yaml relies on WMS_MAC_SECRET_PREVIOUS being absent from this.
TESTDATA_ENV = {"WMS_MAC_SECRET": "test-secret"}
# A YAML syntax error is reported as "path:line:col: ...", every other problem as "path: ...".
_LINE_COL = re.compile(r"\d+:\d+: ")


def _expectations(path: Path) -> list[str]:
    """The file's `# expect: <problem>` comment lines, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [m[1] for line in lines if (m := re.fullmatch(r"# expect: (.+)", line))]


def _with_path(path: Path, line: str) -> str:
    return f"{path}:{line}" if _LINE_COL.match(line) else f"{path}: {line}"


@pytest.mark.parametrize("path", sorted(TESTDATA.glob("*.yaml")), ids=lambda p: p.stem)
def test_testdata_file_reports_exactly_its_expected_problems(path):
    expectations = _expectations(path)
    assert expectations, f"{path.name} has no '# expect:' line"
    with pytest.raises(ConfigError) as exc:
        load_config(str(path), TESTDATA_ENV)
    assert exc.value.problems == [_with_path(path, line) for line in expectations]


SLACK_URL = "https://hooks.slack.com/services/T000/B000/XXXX"
SHIPPED = [
    ("relay.yaml", {"WMS_MAC_SECRET": "mac-current", "SLACK_WEBHOOK_URL": SLACK_URL}),
    ("relay.dev.yaml", {}),
    (
        "relay.example.yaml",
        {
            "WMS_MAC_SECRET": "mac-current",
            "WMS_MAC_SECRET_PREVIOUS": "mac-previous",
            "SLACK_WEBHOOK_URL": SLACK_URL,
            "CRM_CALLBACK_URL": "https://crm.example.com/wms",
            "CRM_SIGNING_SECRET": "crm-signing",
        },
    ),
]


@pytest.mark.parametrize("name, environ", SHIPPED, ids=[name for name, _ in SHIPPED])
def test_shipped_config_loads_with_only_the_variables_it_names(name, environ):
    loaded = load_config(str(CONFIG_DIR / name), environ)
    assert list(loaded.sources) == ["wms"]


def test_dev_config_falls_back_to_its_public_secret():
    loaded = load_config(str(CONFIG_DIR / "relay.dev.yaml"), {})
    assert [s.reveal() for s in loaded.sources["wms"].mac_secrets] == ["dev-only-secret"]


def test_example_config_shows_every_destination_type_and_the_ingest_defaults():
    name, environ = SHIPPED[2]
    loaded = load_config(str(CONFIG_DIR / name), environ)
    assert {d.type for d in loaded.destinations.values()} == {"slack", "email", "http"}
    assert loaded.ingest == Ingest()


SLACK_UNSET = "destinations.ops-slack.webhook_url: environment variable SLACK_WEBHOOK_URL is not set"
MAC_UNSET = "sources.wms.mac_secrets[0]: environment variable WMS_MAC_SECRET is not set"


@pytest.mark.parametrize(
    "environ, expected",
    [({"WMS_MAC_SECRET": "mac-current"}, [SLACK_UNSET]), ({}, [MAC_UNSET, SLACK_UNSET])],
)
def test_unset_variable_in_relay_yaml_is_named_once(environ, expected):
    path = str(CONFIG_DIR / "relay.yaml")
    with pytest.raises(ConfigError) as exc:
        load_config(path, environ)
    assert exc.value.problems == [f"{path}: {line}" for line in expected]


def _write_source(tmp_path: Path, mac_secret: str) -> str:
    path = tmp_path / "relay.yaml"
    path.write_text(f'sources:\n  wms: {{mac_secrets: ["{mac_secret}"]}}\n', encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    "written, environ, loaded",
    [
        ("${SECRET}", {"SECRET": "abc"}, "abc"),
        ("${SECRET:-fallback}", {}, "fallback"),
        ("${SECRET:-fallback}", {"SECRET": "abc"}, "abc"),
        ("${SECRET:-fallback}", {"SECRET": ""}, "fallback"),  # as in the shell: set but empty
        ("pre-${A}-${B:-b}", {"A": "a"}, "pre-a-b"),
        ("pa$$word", {}, "pa$word"),
        ("$${SECRET}", {"SECRET": "abc"}, "${SECRET}"),
        ("$$$${SECRET}", {}, "$${SECRET}"),
        ("pa$word", {}, "pa$word"),
        ("$SECRET", {"SECRET": "abc"}, "$SECRET"),
    ],
)
def test_variable_expansion(tmp_path, written, environ, loaded):
    config_path = _write_source(tmp_path, written)
    assert load_config(config_path, environ).sources["wms"].mac_secrets[0].reveal() == loaded


@pytest.mark.parametrize(
    "written, environ, problem",
    [
        ("${SECRET}", {}, "environment variable SECRET is not set"),
        ("${SECRET}", {"SECRET": ""}, "must not be empty"),
        ("${SECRET:-}", {}, "must not be empty"),
    ],
)
def test_variable_expansion_problems(tmp_path, written, environ, problem):
    config_path = _write_source(tmp_path, written)
    with pytest.raises(ConfigError) as exc:
        load_config(config_path, environ)
    assert exc.value.problems == [f"{config_path}: sources.wms.mac_secrets[0]: {problem}"]


def test_variable_can_supply_a_number(tmp_path):
    path = tmp_path / "relay.yaml"
    path.write_text('sources: {wms: {mac_secrets: [s]}}\ningest: {max_body_bytes: "${MAX:-1024}"}\n', encoding="utf-8")
    assert load_config(str(path), {}).ingest.max_body_bytes == 1024

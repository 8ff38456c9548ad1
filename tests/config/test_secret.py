"""Secrets never show: not in a Secret's repr, not in a loaded config's repr, not in any config error."""

import textwrap

import pytest

from config.errors import ConfigError
from config.loader import load_config
from config.secret import Secret

TOKEN = "SECRETPART"


@pytest.mark.parametrize(
    "show",
    [repr, str, lambda s: f"{s}", lambda s: f"{s!r}", lambda s: "%s" % s, lambda s: str([s]).strip("[]")],
    ids=["repr", "str", "f-string", "f-string-repr", "percent", "in-a-list"],
)
def test_secret_shows_as_redacted(show):
    assert show(Secret(TOKEN)) == "<redacted>"


def test_secret_reveals_its_value_on_request():
    assert Secret(TOKEN).reveal() == TOKEN


def test_loaded_config_repr_hides_every_secret(tmp_path):
    path = tmp_path / "relay.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            sources: {{wms: {{mac_secrets: [mac-{TOKEN}]}}}}
            destinations:
              ops-slack: {{type: slack, webhook_url: "https://hooks.example.com/T000/{TOKEN}"}}
              crm: {{type: http, url: "https://crm.example.com/in?token={TOKEN}", signing_secret: sign-{TOKEN},
                    headers: {{Authorization: "Bearer {TOKEN}"}}}}
            """
        ),
        encoding="utf-8",
    )
    loaded = load_config(str(path), {})
    assert TOKEN not in repr(loaded)
    assert TOKEN not in str(loaded)


def _leak_case(yaml_text: str, environ: dict | None = None, secret: str = TOKEN):
    return pytest.param(yaml_text, environ or {}, secret)


BASE = "sources: {wms: {mac_secrets: [test-secret]}}\n"


def _slack(webhook_url: str) -> str:
    return BASE + f"destinations: {{s: {{type: slack, webhook_url: {webhook_url}}}}}"


def _http(url: str, signing_secret: str = "s") -> str:
    return BASE + f'destinations: {{crm: {{type: http, url: "{url}", signing_secret: {signing_secret}}}}}'


LEAK_CASES = {
    "slack-http-url": _leak_case(_slack(f'"http://hooks.example.com/T000/{TOKEN}"')),
    "slack-http-url-from-env": _leak_case(
        _slack('"${SLACK_WEBHOOK_URL}"'), {"SLACK_WEBHOOK_URL": f"http://hooks.example.com/T000/{TOKEN}"}
    ),
    "slack-ftp-url": _leak_case(_slack(f'"ftp://hooks.example.com/T000/{TOKEN}"')),
    "slack-url-not-a-string": _leak_case(_slack(f"[{TOKEN}]")),
    "mac-secret-with-whitespace": _leak_case(f'sources: {{wms: {{mac_secrets: [" {TOKEN}"]}}}}'),
    "mac-secrets-not-a-list": _leak_case(f"sources: {{wms: {{mac_secrets: {TOKEN}}}}}"),
    "mac-secret-under-a-misspelt-key": _leak_case(f"sources: {{wms: {{mac_secret: [{TOKEN}]}}}}"),
    "mac-secret-breaking-yaml": _leak_case(f'sources: {{wms: {{mac_secrets: ["{TOKEN}" x]}}}}'),
    "signing-secret-a-number": _leak_case(_http("https://crm.example.com", "8675309"), secret="8675309"),
    "signing-secret-a-list": _leak_case(_http("https://crm.example.com", f"[{TOKEN}]")),
    "http-url-userinfo-and-query": _leak_case(_http(f"ftp://u:{TOKEN}@crm.example.com/in?t={TOKEN}")),
    "http-url-bad-port": _leak_case(_http(f"https://u:{TOKEN}@crm.example.com:99999/")),
    "header-value-a-number": _leak_case(
        BASE
        + 'destinations: {crm: {type: http, url: "https://c.example.com", signing_secret: s, headers: {X-Key: 8675309}}}',
        secret="8675309",
    ),
    "http-url-without-scheme": _leak_case(_http(f"crm.example.com/in?token={TOKEN}")),
    "http-url-userinfo-without-scheme": _leak_case(_http(f"admin:{TOKEN}@crm.example.com/in")),
    "slack-url-as-the-whole-destination": _leak_case(
        BASE + 'destinations: {ops-slack: "${SLACK_WEBHOOK_URL}"}',
        {"SLACK_WEBHOOK_URL": f"https://hooks.example.com/T000/{TOKEN}"},
    ),
    "mac-secret-as-the-whole-source": _leak_case('sources: {wms: "${WMS_MAC_SECRET}"}', {"WMS_MAC_SECRET": TOKEN}),
}


@pytest.mark.parametrize("yaml_text, environ, secret", LEAK_CASES.values(), ids=LEAK_CASES.keys())
def test_config_error_never_shows_a_secret(tmp_path, yaml_text, environ, secret):
    path = tmp_path / "relay.yaml"
    path.write_text(yaml_text, encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_config(str(path), environ)
    assert secret not in str(exc.value)

"""The `relay` command: check-config and send-sample against a real HTTP server."""

import pytest
from click.testing import CliRunner

from devtools.local_redis import free_port
from relay.cli.main import main
from relay.domain.signature import compute
from tests.conftest import CONFIG_ENV, SECRET


@pytest.fixture
def env(config_path, redis_server):
    return {"RELAY_CONFIG": str(config_path), "REDIS_URL": redis_server.url, **CONFIG_ENV}


def run(args, env):
    return CliRunner().invoke(main, args, env=env, catch_exceptions=False)


def test_check_config_says_ok(env, config_path):
    result = run(["check-config"], env)
    assert (result.exit_code, result.output) == (0, f"{config_path}: OK (1 source(s), 0 destination(s), 0 rule(s))\n")


def test_check_config_lists_every_problem_and_exits_1(env, config_path):
    config_path.write_text("sources:\n  wms: {mac_secrets: []}\nrules:\n  - {name: r, to: [nowhere]}\n")
    result = run(["check-config"], dict(env, PORT="http", REDIS_URL=""))
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "REDIS_URL: required, e.g. redis://localhost:6379/0",
        "PORT: must be a TCP port number (1-65535), got 'http'",
        f"{config_path}: sources.wms.mac_secrets: must not be empty",
        f"{config_path}: rules[0].to[0]: undefined destination 'nowhere' (defined: none)",
    ]


def test_check_config_never_prints_a_secret(env, config_path):
    config_path.write_text('sources:\n  wms: {mac_secrets: [" padded-secret-value "]}\n')
    result = run(["check-config"], env)
    assert result.exit_code == 1
    assert "padded-secret-value" not in result.output
    assert (
        result.output
        == f"{config_path}: sources.wms.mac_secrets[0]: must not start or end with whitespace (a copy-paste error?)\n"
    )


def test_send_sample_posts_a_signed_event_that_is_accepted(env, live_url):
    result = run(["send-sample", "--url", f"{live_url}/hooks/wms", "--session", "demo", "--sequence", "2"], env)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == '-> 202 {"status":"accepted","id":"wms:demo:2"}'
    assert '"event":"CONSTRAINT_VIOLATION"' in result.output
    assert SECRET not in result.output


def test_send_sample_uses_port_for_its_default_url(env, live_url):
    port = live_url.rsplit(":", 1)[1]
    result = run(["send-sample", "--event", "WMS_LOADED"], dict(env, PORT=port))
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"POST http://127.0.0.1:{port}/hooks/wms\n")


def test_send_sample_exits_1_when_the_relay_is_not_running(env):
    result = run(["send-sample", "--url", f"http://127.0.0.1:{free_port()}/hooks/wms"], env)
    assert result.exit_code == 1
    assert "cannot reach" in result.output and "(is the relay running?)" in result.output


def test_send_sample_rejects_an_unknown_source(env):
    result = CliRunner().invoke(main, ["send-sample", "--source", "crm"], env=env)
    assert result.exit_code == 2
    assert "no source named 'crm' (defined: 'wms')" in result.output


def test_sign_prints_the_header_value_wms_would_send(env, tmp_path):
    body = '{"note":"Łódź"}'.encode()
    path = tmp_path / "body.json"
    path.write_bytes(body)
    result = run(["sign", str(path)], env)
    assert (result.exit_code, result.output) == (0, compute(SECRET, body) + "\n")
    assert CliRunner().invoke(main, ["sign"], env=env, input=body).output == compute(SECRET, body) + "\n"


ROUTED_CONFIG = """\
sources: {wms: {mac_secrets: ["${WMS_MAC_SECRET}"]}}
destinations:
  ops-slack: {type: slack, webhook_url: "https://hooks.slack.com/services/T0/B0/X"}
  pager: {type: http, url: "https://pager.example.com/in", signing_secret: s}
  crm: {type: http, url: "https://crm.example.com/in", signing_secret: s}
rules:
  - {name: failed, match: {severity: ">=WARN"}, to: [ops-slack]}
  - {name: low-snr, match: {event: [INTERMEDIATE_RESULTS], payload: {snr: {lt: 3}}}, to: [pager], stop: true}
  - {name: everything, match: {event: ["*", CONSTRAINT_VIOLATON]}, to: [crm, ops-slack]}
"""


def test_check_config_shows_where_a_sample_event_goes(env, config_path):
    config_path.write_text(ROUTED_CONFIG)
    result = CliRunner().invoke(main, ["check-config", "--event", "CONSTRAINT_VIOLATION"], env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1:] == [
        (
            'sample event CONSTRAINT_VIOLATION (ERROR) from \'wms\', payload {"constraint": "FACE_NOT_CENTERED", '
            '"measurementId": "f0c8ca8d-111d-4dcf-a69d-46ed39a2db06"}:'
        ),
        "  rule 'failed': fires -> ops-slack",
        "  rule 'low-snr': does not match",
        "  rule 'everything': fires -> crm, ops-slack",
        "delivered to: ops-slack, crm",
    ]
    assert result.stderr == (
        f"warning: {config_path}: rules[2].match.event[1]: 'CONSTRAINT_VIOLATON' matches no documented WMS event "
        "code (did you mean 'CONSTRAINT_VIOLATION'?); it matches only if WMS sends such a code\n"
    )


def test_check_config_routes_a_derived_session_event_as_the_workers_would(env, config_path):
    config_path.write_text(ROUTED_CONFIG)
    result = CliRunner().invoke(main, ["check-config", "--event", "SESSION_FAILED"], env=env)
    assert result.exit_code == 0, result.output
    # Only the rule whose event names it (the glob "*") fires: `severity: >=WARN` alone does not.
    assert result.stdout.splitlines()[1:] == [
        "sample event SESSION_FAILED (ERROR) from 'wms', payload {}:",
        "  rule 'failed': does not match",
        "  rule 'low-snr': does not match",
        "  rule 'everything': fires -> crm, ops-slack",
        "delivered to: crm, ops-slack",
    ]


def test_check_config_sample_payload_and_stop(env, config_path):
    config_path.write_text(ROUTED_CONFIG)
    args = ["check-config", "--event", "INTERMEDIATE_RESULTS", "--payload", "snr=2.5", "--payload", "note=hi"]
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert '"snr": 2.5' in lines[1] and '"note": "hi"' in lines[1]
    assert lines[2:] == [
        "  rule 'failed': does not match",
        "  rule 'low-snr': fires -> pager",
        "  rule 'everything': not evaluated (rule 'low-snr' has stop: true)",
        "delivered to: pager",
    ]


def test_check_config_severity_override_and_no_route(env, config_path):
    config_path.write_text(ROUTED_CONFIG.replace('"*", ', ""))
    result = CliRunner().invoke(main, ["check-config", "--event", "WMS_LOADED", "--severity", "INFO"], env=env)
    assert result.stdout.splitlines()[-1] == "delivered to: nothing (no rule fires)"
    result = CliRunner().invoke(main, ["check-config", "--event", "WMS_LOADED", "--payload", "oops"], env=env)
    assert result.exit_code == 2 and "expected FIELD=VALUE, got 'oops'" in result.output


def test_check_config_payload_fields_nest_and_bad_values_are_refused(env, config_path):
    config_path.write_text(ROUTED_CONFIG.replace("payload: {snr: {lt: 3}}", 'payload: {"api.status": {gte: 500}}'))
    args = ["check-config", "--event", "INTERMEDIATE_RESULTS", "--payload", "api.status=503"]
    result = CliRunner().invoke(main, args, env=env)
    assert "  rule 'low-snr': fires -> pager" in result.stdout.splitlines()
    result = CliRunner().invoke(main, ["check-config", "--event", "API_ERROR", "--payload", "measurementId=5"], env=env)
    assert result.exit_code == 2
    assert "payload.measurementId: must be a string, got a number" in result.output


def test_redis_commands_say_so_in_one_line_when_redis_is_down(env):
    port = free_port()
    result = CliRunner().invoke(main, ["dead-letters", "list"], env=dict(env, REDIS_URL=f"redis://127.0.0.1:{port}/0"))
    assert (result.exit_code, result.output) == (
        1,
        f"error: redis at 127.0.0.1:{port} is unreachable (connection refused)\n",
    )

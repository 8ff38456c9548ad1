"""Loads config/relay.yaml: YAML, ${VAR} expansion, validation, cross-references, all problems at once."""

import os
import re
import types
import typing
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from config.destinations import DESTINATION_TYPES
from config.errors import ConfigError
from config.model import RelayConfig
from config.settings import DEFAULT_CONFIG_PATH, Settings
from config.types import DESTINATION_NAME_RULE, HEADER_NAME_RULE, SOURCE_NAME_RULE

# ${VAR} or ${VAR:-default}; $$ is a literal $.
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# Never quote the value of these keys in an error: they are secrets or carry one.
_SECRET_KEYS = {"mac_secrets", "webhook_url", "signing_secret", "headers"}
_NAME_RULES = {"sources": SOURCE_NAME_RULE[1], "destinations": DESTINATION_NAME_RULE[1], "headers": HEADER_NAME_RULE[1]}


def load(environ: dict[str, str] | None = None, *, tool: bool = False) -> tuple[Settings, RelayConfig]:
    """Read the environment and the config file it names; raise ConfigError listing every problem of both.

    tool=True is for the commands that neither queue nor deliver (send-sample, sign, ./dev up): they
    need neither REDIS_URL nor the settings that destinations need (SMTP_URL, EMAIL_FROM).
    """
    env = os.environ if environ is None else environ
    problems: list[str] = []
    settings: Settings | None = None
    try:
        settings = Settings.from_env(env, require_redis=not tool)
    except ConfigError as exc:
        problems += exc.problems
    path = settings.config_path if settings else (env.get("RELAY_CONFIG", "").strip() or DEFAULT_CONFIG_PATH)
    # Even when the environment has problems, say whether email destinations lack their settings.
    email_settings = (bool(env.get("SMTP_URL", "").strip()), bool(env.get("EMAIL_FROM", "").strip()))
    try:
        config = _load_config(path, env, None if tool else email_settings)
    except ConfigError as exc:
        problems += exc.problems
    if problems:
        raise ConfigError(problems)
    assert settings is not None  # from_env raised (a problem) or returned it
    return settings, config


def load_config(path: str, environ: dict[str, str] | None = None, settings: Settings | None = None) -> RelayConfig:
    """Read, expand and validate the config file; raise ConfigError listing every problem.

    With `settings`, also check what the destinations need from the environment (SMTP for email).
    """
    email_settings = (bool(settings.smtp_url), bool(settings.email_from)) if settings else None
    return _load_config(path, os.environ if environ is None else environ, email_settings)


def _load_config(path: str, env: Mapping[str, str], email_settings: tuple[bool, bool] | None) -> RelayConfig:
    data = _read_yaml(path)
    problems: list[str] = []
    unset: set[tuple] = set()
    data = _expand(data, env, (), problems, unset)
    config: RelayConfig | None = None
    try:
        config = RelayConfig.model_validate(data)
    except ValidationError as exc:
        # A value whose variable is unset was already reported; its emptiness is no second problem.
        problems.extend(_describe(err) for err in exc.errors() if _user_loc(err["loc"]) not in unset)
    problems.extend(_cross_reference_problems(data))
    if email_settings is not None:
        problems.extend(_settings_problems(data, *email_settings))
    if problems:
        raise ConfigError([f"{path}: {p}" for p in problems])
    # A failed validation is a problem: its own, or that of the unset variable it was skipped for.
    assert config is not None
    return config


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: the second one would silently win."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror} (set RELAY_CONFIG to the config file)"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: cannot read: not UTF-8 text"]) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        message = getattr(exc, "problem", None) or str(exc)
        context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and context_mark:
            message += f" ({context} started at line {context_mark.line + 1}, column {context_mark.column + 1})"
        raise ConfigError([f"{where}: invalid YAML: {message}"]) from None
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: must be a mapping with the keys sources, destinations, rules, ingest"])
    return data


def _expand(value: Any, env: Mapping[str, str], loc: tuple, problems: list[str], unset: set[tuple]) -> Any:
    if isinstance(value, dict):
        return {k: _expand(v, env, (*loc, k), problems, unset) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, env, (*loc, i), problems, unset) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name, default = m.group(1), m.group(2)
        # As in the shell and Compose, ${VAR:-default} also covers a variable set but empty.
        if env.get(name) or (name in env and default is None):
            return env[name]
        if default is not None:
            return default
        problems.append(f"{_format_loc(loc)}: environment variable {name} is not set")
        unset.add(loc)
        return ""

    return _VAR.sub(substitute, value)


def _format_loc(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _user_loc(pydantic_loc: tuple) -> tuple:
    """The path as the user wrote it: the destination union adds its type tag, which is no key."""
    loc = list(pydantic_loc)
    if len(loc) >= 3 and loc[0] == "destinations" and loc[2] in DESTINATION_TYPES:
        del loc[2]
    return tuple(loc)


def _describe(err: ErrorDetails) -> str:
    pydantic_loc = list(err["loc"])
    loc = list(_user_loc(err["loc"]))
    kind, ctx = err["type"], err.get("ctx", {})
    if kind == "value_error":
        return f"{_format_loc(loc)}: {ctx['error']}"
    if kind == "missing":
        return f"{_format_loc(loc)}: required"
    if kind == "extra_forbidden":
        allowed = ", ".join(repr(k) for k in _allowed_keys(pydantic_loc[:-1]))
        return f"{_format_loc(loc[:-1])}: unknown key {loc[-1]!r} (allowed: {allowed})"
    if kind == "union_tag_not_found":
        return f"{_format_loc(loc)}.type: required, one of {', '.join(map(repr, DESTINATION_TYPES))}"
    if kind == "union_tag_invalid":
        return f"{_format_loc(loc)}.type: must be one of {ctx['expected_tags']}, got {ctx['tag']!r}"
    if loc and loc[-1] == "[key]":
        rule = _NAME_RULES.get(loc[-3], "")
        return f"{_format_loc(loc[:-2])}: invalid name {loc[-2]!r}: use {rule}"
    message = _MESSAGES.get(kind, err["msg"][0].lower() + err["msg"][1:])
    if kind == "literal_error":
        message = f"must be one of {ctx['expected'].replace(' or ', ', ')}"
    elif kind == "greater_than_equal":
        message = f"must be at least {ctx['ge']}"
    elif kind == "less_than_equal":
        message = f"must be at most {ctx['le']}"
    # Quote a wrong value only where a scalar was expected and no secret can be involved: a
    # string given where a mapping belongs ("wms: ${WMS_MAC_SECRET}") may well be the secret.
    value = err.get("input")
    if kind in _SCALAR_ERRORS and not _SECRET_KEYS.intersection(map(str, loc)):
        message += f", got {value!r}"
    elif kind in _TYPE_ERRORS:
        message += f", got {_kind_of(value)}"
    return f"{_format_loc(loc)}: {message}"


_MESSAGES = {
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "string_too_short": "must not be empty",
    "too_short": "must not be empty",
    "string_pattern_mismatch": "has characters that are not allowed",
}


_SCALAR_ERRORS = {
    "int_type",
    "int_parsing",
    "int_from_float",
    "float_type",
    "float_parsing",
    "bool_type",
    "bool_parsing",
    "literal_error",
    "greater_than_equal",
    "less_than_equal",
}


_TYPE_ERRORS = {"string_type", "list_type", "dict_type", "model_type", "model_attributes_type"}


def _kind_of(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", type(None): "nothing"}.get(
        type(value), "a number"
    )


def _allowed_keys(loc: list) -> list[str]:
    """The keys of the model at `loc` (a pydantic error path) in RelayConfig, for 'unknown key' errors."""
    tp: Any = RelayConfig
    for part in loc:
        tp = _unwrap(tp)
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            tp = tp.model_fields[part].annotation
        elif origin is list:
            tp = args[0]
        elif origin is dict:
            tp = args[1]
        elif origin in (typing.Union, types.UnionType):
            # A destination: the path names the member by its type tag.
            tp = next((m for m in args if typing.get_args(m.model_fields["type"].annotation) == (part,)), None)
        else:
            return []
    tp = _unwrap(tp)
    if not (isinstance(tp, type) and issubclass(tp, BaseModel)):
        return []
    return [field.alias or name for name, field in tp.model_fields.items()]


def _unwrap(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _mapping(value: Any) -> dict:
    """`value` if the file has a mapping there, else an empty one: its shape is reported elsewhere."""
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list:
    """`value` if the file has a list there, else an empty one."""
    return value if isinstance(value, list) else []


def _cross_reference_problems(data: dict) -> list[str]:
    problems = []
    destinations = _mapping(data.get("destinations"))
    sources = _mapping(data.get("sources"))
    defined = ", ".join(repr(n) for n in destinations) or "none"
    seen_names: dict[str, int] = {}
    rules = _list(data.get("rules"))
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict):
            continue
        name = rule.get("name")
        if isinstance(name, str) and name in seen_names:
            problems.append(f"rules[{i}].name: duplicate rule name {name!r} (first used by rules[{seen_names[name]}])")
        elif isinstance(name, str):
            seen_names[name] = i
        targets = _list(rule.get("to"))
        for j, target in enumerate(targets):
            if isinstance(target, str) and target not in destinations:
                problems.append(f"rules[{i}].to[{j}]: undefined destination {target!r} (defined: {defined})")
            elif isinstance(target, str) and rule.get("group_by") is not None:
                kind = _mapping(destinations[target]).get("type")
                if kind not in (None, "slack", "email"):
                    # A grouped message is for people; a callback takes each event as WMS sent it.
                    problems.append(
                        f"rules[{i}].to[{j}]: group_by applies to slack and email destinations, "
                        f"got {target!r} (type {kind!r})"
                    )
        match = _mapping(rule.get("match"))
        match_sources = _list(match.get("source"))
        for j, source in enumerate(match_sources):
            if isinstance(source, str) and source not in sources:
                known = ", ".join(repr(n) for n in sources) or "none"
                problems.append(f"rules[{i}].match.source[{j}]: undefined source {source!r} (defined: {known})")
    announce_to = data.get("operations", {}).get("announce_to") if isinstance(data.get("operations"), dict) else None
    if isinstance(announce_to, str):
        target = destinations.get(announce_to)
        if target is None:
            problems.append(f"operations.announce_to: undefined destination {announce_to!r} (defined: {defined})")
        elif isinstance(target, dict) and target.get("type") not in ("slack", "email"):
            problems.append(
                f"operations.announce_to: must name a slack or email destination, got {announce_to!r} "
                f"(type {target.get('type')!r})"
            )
    return problems


def _settings_problems(data: dict, smtp_url_set: bool, email_from_set: bool) -> list[str]:
    problems = []
    destinations = _mapping(data.get("destinations"))
    for name, dest in destinations.items():
        if isinstance(dest, dict) and dest.get("type") == "email":
            missing = [v for v, is_set in (("SMTP_URL", smtp_url_set), ("EMAIL_FROM", email_from_set)) if not is_set]
            if missing:
                problems.append(f"destinations.{name}: email destinations need {' and '.join(missing)} set")
    return problems

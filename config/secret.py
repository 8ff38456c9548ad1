"""A string that never shows itself: MAC secrets, Slack webhook URLs, SMTP passwords."""

from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

REDACTED = "<redacted>"


class Secret:
    """Holds a secret value; str(), repr() and f-strings all give '<redacted>'."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        if not isinstance(value, str):
            raise TypeError(f"a secret must be a string, got {type(value).__name__}")
        self._value = value

    def reveal(self) -> str:
        """Return the real value; call it only where the value is used, never to show it."""
        return self._value

    def __repr__(self) -> str:
        return REDACTED

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(_validate_secret, core_schema.str_schema())


def _validate_secret(value: str) -> Secret:
    # Error messages here must never quote the value.
    if value == "":
        raise ValueError("must not be empty")
    if value != value.strip():
        raise ValueError("must not start or end with whitespace (a copy-paste error?)")
    return Secret(value)

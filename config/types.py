"""Value types shared by the config models: names, durations, severities, email addresses."""

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, StringConstraints

from config.durations import parse_duration
from config.values import email_problem
from config.wms_events import SEVERITIES

# Source names end up in URLs (/hooks/<source>) and Redis keys: keep them plain.
SOURCE_NAME_RULE = (r"^[a-z0-9][a-z0-9_-]{0,63}$", "lowercase letters, digits, '-' and '_' (at most 64 characters)")
DESTINATION_NAME_RULE = (
    r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
    "letters, digits, '-', '_' and '.' (at most 64 characters)",
)
HEADER_NAME_RULE = (r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$", "an HTTP header name (letters, digits and !#$%&'*+.^_`|~-)")

SourceName = Annotated[str, StringConstraints(pattern=SOURCE_NAME_RULE[0])]
DestinationName = Annotated[str, StringConstraints(pattern=DESTINATION_NAME_RULE[0])]
HeaderName = Annotated[str, StringConstraints(pattern=HEADER_NAME_RULE[0])]
Duration = Annotated[float, BeforeValidator(parse_duration)]
Severity = Literal["INFO", "WARN", "ERROR"]
assert Severity.__args__ == SEVERITIES  # type: ignore[attr-defined]


def _email(value: str) -> str:
    if problem := email_problem(value):
        raise ValueError(problem)
    return value


Email = Annotated[str, AfterValidator(_email)]


class Strict(BaseModel):
    """Base of every config model: unknown keys are errors, so a typo cannot silently disable a setting."""

    model_config = ConfigDict(extra="forbid", frozen=True)

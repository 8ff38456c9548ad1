"""The one error type for a bad configuration: every problem found, reported together."""


class ConfigError(Exception):
    """Raised when the environment or the config file is invalid; holds every problem found."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))

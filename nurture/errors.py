"""The error tree: one root, a few well-named branches."""

from __future__ import annotations


class NurtureError(Exception):
    """Root of every error nurture raises on purpose."""


class ConfigError(NurtureError):
    """config.toml or the environment is invalid."""


class ValidationFailed(NurtureError):
    """Journey, template or config files have problems (all of them are listed)."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class ConditionError(NurtureError):
    """A condition expression does not parse or cannot be evaluated."""


class TemplateError(NurtureError):
    """A template is missing, does not compile, or failed to render."""


class ContactError(NurtureError):
    """A contact is unknown, or its data is invalid."""


class ProviderError(NurtureError):
    """A provider refused or failed to take a message."""

    def __init__(self, message: str, *, retryable: bool, code: str | None = None,
                 consequence: str | None = None) -> None:
        self.retryable = retryable
        self.code = code
        #: for permanent errors: "suppress" the address, or "withdraw" channel consent
        self.consequence = consequence
        super().__init__(message)


class SchemaOutdated(NurtureError):
    """The database schema is behind this version's migrations (`nurture db upgrade`)."""


class SignatureError(NurtureError):
    """A webhook or link signature is missing, stale or wrong."""


class Problem:
    """One validation problem, printed as `path:line: message`."""

    __slots__ = ("path", "line", "message")

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path = path
        self.line = line
        self.message = message

    def __str__(self) -> str:
        return f"{self.path}:{self.line or 1}: {self.message}"

    def __repr__(self) -> str:
        return f"Problem({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Problem) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

"""The error tree: one root, a few well-named branches."""

from __future__ import annotations

from typing import ClassVar


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
    """One validation problem, printed as `path:line: message` (`path:line: warning: …`)."""

    __slots__ = ("path", "line", "message", "severity")

    #: makes `nurture validate` fail (exit 1)
    ERROR: ClassVar[str] = "error"
    #: worth knowing, stops nothing (printed with `warning:`)
    WARNING: ClassVar[str] = "warning"

    def __init__(self, path: str, line: int | None, message: str,
                 severity: str = "error") -> None:
        if severity not in (self.ERROR, self.WARNING):
            raise ValueError(f"severity must be 'error' or 'warning', not {severity!r}")
        self.path = path
        self.line = line
        self.message = message
        self.severity = severity

    @property
    def is_error(self) -> bool:
        return self.severity == self.ERROR

    def as_dict(self) -> dict[str, str | int]:
        return {"path": self.path, "line": self.line or 1, "severity": self.severity,
                "message": self.message}

    def __str__(self) -> str:
        prefix = "warning: " if self.severity == self.WARNING else ""
        return f"{self.path}:{self.line or 1}: {prefix}{self.message}"

    def __repr__(self) -> str:
        return f"Problem({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Problem) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

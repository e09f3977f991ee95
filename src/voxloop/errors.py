"""Errors raised by voxloop; each names what was wrong and where."""

from __future__ import annotations


class VoxloopError(Exception):
    """Base class of all voxloop errors.

    ``loc`` names the refused field the way request validation does (``("query",
    "period")``, ``("body", "to")``); the API puts it into the 4xx body.
    """

    def __init__(self, *args: object, loc: tuple[str | int, ...] | None = None) -> None:
        super().__init__(*args)
        self.loc = loc


class ConfigError(VoxloopError, ValueError):
    """Settings are invalid or unsafe."""


class UnusableInputError(VoxloopError):
    """An input file cannot be read at all (unreadable, unknown columns, no mapping)."""


class NotFoundError(VoxloopError):
    """A requested record does not exist."""


class ConflictError(VoxloopError):
    """An update lost a race (optimistic concurrency) or duplicates an existing record."""


class InvalidTransitionError(VoxloopError):
    """A state change is not allowed by the transition table."""


class PermissionDeniedError(VoxloopError):
    """The caller may not see or change this record."""

"""Declarative work-order life cycle: states, allowed transitions and their timestamp columns."""

from __future__ import annotations

from typing import Final

from voxloop.errors import InvalidTransitionError

NEW: Final = "new"
ASSIGNED: Final = "assigned"
IN_PROGRESS: Final = "in_progress"
PENDING_CUSTOMER: Final = "pending_customer"
ESCALATED: Final = "escalated"
RESOLVED: Final = "resolved"
VERIFIED: Final = "verified"
CLOSED: Final = "closed"
REOPENED: Final = "reopened"

#: state -> states it may move to.  Everything not listed is refused.
TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    NEW: frozenset({ASSIGNED, IN_PROGRESS, ESCALATED, RESOLVED, CLOSED}),
    ASSIGNED: frozenset({IN_PROGRESS, PENDING_CUSTOMER, ESCALATED, RESOLVED}),
    IN_PROGRESS: frozenset({PENDING_CUSTOMER, ESCALATED, RESOLVED}),
    PENDING_CUSTOMER: frozenset({IN_PROGRESS, ESCALATED, RESOLVED}),
    ESCALATED: frozenset({ASSIGNED, IN_PROGRESS, RESOLVED}),
    RESOLVED: frozenset({VERIFIED, REOPENED, CLOSED}),
    VERIFIED: frozenset({CLOSED, REOPENED}),
    CLOSED: frozenset({REOPENED}),
    REOPENED: frozenset({ASSIGNED, IN_PROGRESS, ESCALATED, RESOLVED}),
}

STATES: Final = tuple(TRANSITIONS)

#: States in which the order still needs work (SLA clocks run).
OPEN_STATES: Final = frozenset({NEW, ASSIGNED, IN_PROGRESS, PENDING_CUSTOMER, ESCALATED, REOPENED})

#: States that end the handling part (the SLA is met or missed at this point).
DONE_STATES: Final = frozenset({RESOLVED, VERIFIED, CLOSED})

#: Column stamped when an order enters a state (``new`` uses ``created_at``).
TIMESTAMP_COLUMN: Final[dict[str, str]] = {
    state: ("created_at" if state == NEW else f"{state}_at") for state in STATES
}

#: Transitions into these states need a resolution reason.
NEEDS_REASON: Final = frozenset({RESOLVED, CLOSED, REOPENED})


def check_transition(current: str, target: str) -> None:
    """Raise ``InvalidTransitionError`` naming both states when ``current -> target`` is illegal."""
    if target not in TRANSITIONS:
        raise InvalidTransitionError(f"unknown state {target!r}; known: {', '.join(STATES)}")
    if target not in TRANSITIONS.get(current, frozenset()):
        allowed = ", ".join(sorted(TRANSITIONS.get(current, frozenset()))) or "none"
        raise InvalidTransitionError(
            f"work order cannot go from {current!r} to {target!r} (allowed from {current!r}: "
            f"{allowed})"
        )

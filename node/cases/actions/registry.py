"""The registry of action handlers: one staff handler and one partner handler per action of
``lifecycle.ACTIONS``, each registered once (a second registration fails at import).

Handlers are only ever called by the front (node.cases.service), after it has checked the
action against the state machine: a handler cannot be reached without that check.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from node.cases.lifecycle import ACTIONS

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from node.cases.actions.context import CaseDeps, Step
    from node.cases.actor import Actor
    from protocol.envelope import Envelope

StaffHandler = Callable[["Step", Any], Awaitable[None]]
PartnerHandler = Callable[["Step", "Envelope"], Awaitable[None]]
#: ``case.submit`` makes a new case: there is no row to check a state against.
IntakeHandler = Callable[["CaseDeps", "AsyncConnection", "Actor", "Envelope"], Awaitable[None]]

H = TypeVar("H")


class RegistrationError(Exception):
    """A handler registered twice, or under a name the state machine does not have."""


_STAFF: dict[str, StaffHandler] = {}
_PARTNER: dict[str, PartnerHandler] = {}
_INTAKE: dict[str, IntakeHandler] = {}


def _register(table: dict[str, H], kind: str, name: str) -> Callable[[H], H]:
    if name not in ACTIONS:
        raise RegistrationError(f"{kind} handler for unknown action {name!r}")

    def decorate(handler: H) -> H:
        if name in table:
            raise RegistrationError(f"{kind} handler for {name!r} registered twice")
        table[name] = handler
        return handler

    return decorate


def staff(name: str) -> Callable[[StaffHandler], StaffHandler]:
    """Register the handler of staff action ``name`` (payload as sent, already a dict, or an
    object a trusted part of the node hands over, such as InspectionEvidence)."""
    return _register(_STAFF, "staff", name)


def partner(name: str) -> Callable[[PartnerHandler], PartnerHandler]:
    """Register the handler of a partner's message that performs action ``name``."""
    return _register(_PARTNER, "partner", name)


def intake(name: str) -> Callable[[IntakeHandler], IntakeHandler]:
    """Register the handler of a partner's message that makes a new case (``submit``)."""
    return _register(_INTAKE, "intake", name)


def staff_handler(name: str) -> StaffHandler | None:
    return _STAFF.get(name)


def partner_handler(name: str) -> PartnerHandler | None:
    return _PARTNER.get(name)


def intake_handler(name: str) -> IntakeHandler | None:
    return _INTAKE.get(name)


def registered() -> dict[str, set[str]]:
    """Which actions have which handlers (for tests and docs)."""
    return {"staff": set(_STAFF), "partner": set(_PARTNER), "intake": set(_INTAKE)}

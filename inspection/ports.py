"""What the video inspection needs from the node's case domain, as a small interface that
node/app.py fills in with the case front: inspection/ imports nothing of node/cases but the
port's value types (node/cases/ports.py)."""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from node.cases.actor import Actor


class CaseActions(Protocol):
    async def act_in(
        self, conn: AsyncConnection, actor: Actor, case_id: int, name: str, payload: Any
    ) -> dict[str, Any] | None:
        """Perform a case action in the caller's transaction, checked like any other."""

    def may(self, role: str, name: str) -> bool:
        """Whether staff of ``role`` may perform action ``name`` at all (a first check, so
        that a session is not ended by someone who could not sign its record)."""

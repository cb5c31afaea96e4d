"""The front of the case domain: the one way anything changes a case.

A staff action (``act``) or a partner's message (``apply_envelope``) is resolved to an action
of the state machine (by name, or by message type), checked against it — side, role, state —
and only then handed to the action's registered handler, which records the change through
``records.record`` (state, hash-chained event, outgoing envelope, in one transaction).
No handler is reachable another way (docs/architecture.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from node.cases import intake, records
from node.cases.actions import registry
from node.cases.actions.context import CalendarSource, ItemLookup, Step
from node.cases.actor import Actor
from node.cases.deadlines import DEFAULT_DEFERRED_DAYS, DEFAULT_RECTIFICATION_DAYS
from node.cases.errors import CaseError, CaseErrorCode
from node.cases.lifecycle import ACTIONS, Mode, Status, action_for_message, check, sides_of
from node.cases.models import cases, ratings
from node.cases.ports import InspectionEvidence, InspectionScheduler, PartnerKeys
from node.clock import today_in_china
from node.federation.applier import BusinessRefusal
from node.federation.outbox import Outbox
from node.storage.blobs import BlobStore
from node.storage.database import Database
from node.storage.sealing import SealsValues, ephemeral_sealer
from protocol.envelope import Envelope


def _no_partner_keys(kid: str) -> None:
    return None


class _DryRun(Exception):
    """Undo a dry run's transaction."""


@dataclass
class CaseService:
    db: Database
    region: str
    base_url: str
    outbox: Outbox
    blobs: BlobStore
    items: ItemLookup
    calendar: CalendarSource
    #: Trusted keys of partners (evidence manifests are checked with them).
    partner_keys: PartnerKeys = _no_partner_keys
    #: Opens video sessions (the inspection module); None on a node without it.
    inspections: InspectionScheduler | None = None
    #: Seals applicants' ID numbers and phones at rest; keys the query codes' index.
    sealer: SealsValues = field(default_factory=lambda: ephemeral_sealer())
    #: 差评: working days to rectify (``[cases] rectification_days`` in tongban.toml).
    rectification_days: int = DEFAULT_RECTIFICATION_DAYS
    #: 容缺: working days from 收件 to hand in deferred materials (``[cases] deferred_days``).
    deferred_days: int = DEFAULT_DEFERRED_DAYS
    #: Keep online applications without a verified identity (``[identity]
    #: allow_unverified_online``); they wait for a 人证核验 before 受理.
    allow_unverified_online: bool = False
    #: The window named in case.submit's ``received_by``.
    window_name: str = "跨域通办窗口"
    clock: Callable[[], float] = field(default=time.time)

    # -- new cases -------------------------------------------------------------------------

    async def receive_application(self, actor: Actor, payload: Any) -> dict[str, Any]:
        """A window clerk takes an application; returns the case and its query code."""
        self._staff_may(actor, "clerk")
        return await intake.receive_application(self, actor, payload)

    async def receive_online(
        self, payload: Any, identity: intake.CitizenIdentity | None
    ) -> dict[str, Any]:
        """全程网办 on our public page, by the citizen ``identity`` vouches for (None: not
        verified, refused unless ``allow_unverified_online``)."""
        return await intake.receive_online(self, payload, identity)

    async def receive_bundle(self, actor: Actor, payload: Any) -> dict[str, Any]:
        """多地联办: one application, one case per handling region."""
        self._staff_may(actor, "clerk")
        return await intake.receive_bundle(self, actor, payload)

    def _staff_may(self, actor: Actor, *roles: str) -> None:
        if actor.partner or actor.role not in roles or actor.region != self.region:
            raise CaseError(CaseErrorCode.FORBIDDEN, "无权执行此操作")

    # -- staff actions ---------------------------------------------------------------------

    async def act(
        self, actor: Actor, case_id: int, name: str, payload: Any, *, dry_run: bool = False
    ) -> dict[str, Any]:
        """Perform staff action ``name`` on case ``case_id``; returns the case as it is now.

        ``dry_run``: check and carry out the action as usual, then undo it all (nothing is
        committed, no envelope leaves): a page asks "are you sure" only about an action the
        node would take."""
        try:
            async with self.db.write() as conn:
                result = await self.act_in(conn, actor, case_id, name, payload)
                detail = {**await self._detail(conn, case_id), **(result or {})}
                if dry_run:
                    raise _DryRun
        except _DryRun:
            return {"dry_run": True, "action": name}
        return detail

    async def act_in(
        self, conn: AsyncConnection, actor: Actor, case_id: int, name: str, payload: Any
    ) -> dict[str, Any] | None:
        """``act`` inside the caller's transaction (the inspection console ends its session
        in the same one); returns what the handler hands back beside the case, if anything."""
        action = ACTIONS.get(name)
        if action is None or not action.by_staff:
            raise CaseError(CaseErrorCode.UNKNOWN_ACTION, "没有这个办理操作")
        if not isinstance(payload, dict | InspectionEvidence):
            raise CaseError(CaseErrorCode.INVALID_INPUT, "请求体应为 JSON 对象")
        row = await records.load_for_update(conn, case_id)
        if row is None or actor.region != self.region:
            raise CaseError(CaseErrorCode.CASE_NOT_FOUND, "案件不存在")
        if actor.partner or actor.role is None:
            raise CaseError(CaseErrorCode.FORBIDDEN, f"无权执行「{action.label}」")
        check(
            action, state=Status(row.status), role=actor.role, sides=records.sides(row, self.region)
        )
        handler = registry.staff_handler(name)
        assert handler is not None, name  # tests/test_case_actions.py: every action has one
        step = Step(self, conn, row, actor, action)
        await handler(step, payload)
        return step.result

    def may(self, role: str, name: str) -> bool:
        """Whether ``role`` may perform action ``name`` at all (state and side aside)."""
        action = ACTIONS.get(name)
        return action is not None and role in action.roles

    async def rate_as_citizen(self, case_id: int, payload: dict[str, Any]) -> None:
        """The applicant rates on the public page (after the case number and query code)."""
        citizen = Actor("citizen", None, "citizen", self.region)
        payload = {k: v for k, v in payload.items() if k != "channel"}
        async with self.db.write() as conn:
            await self.act_in(conn, citizen, case_id, "rate", payload)

    # -- partners' messages ----------------------------------------------------------------

    async def apply_envelope(self, conn: AsyncConnection, envelope: Envelope) -> None:
        """Apply a partner's message (the federation applier's handler); a refusal becomes
        BusinessRefusal, which the applier answers with ``case.error``."""
        try:
            await self._apply(conn, envelope)
        except CaseError as exc:
            raise BusinessRefusal(exc.code, exc.detail) from None

    async def _apply(self, conn: AsyncConnection, env: Envelope) -> None:
        actor = Actor.of_partner(env.iss)
        action = action_for_message(env.typ, env.body)
        if action is None:
            raise CaseError(CaseErrorCode.UNSUPPORTED_MESSAGE, "不支持的消息", detail=env.typ)
        new_case = registry.intake_handler(action.name)
        if new_case is not None:
            await new_case(self, conn, actor, env)
            return
        row = await records.load_by_xt(conn, env.xt)
        if row is None:
            raise CaseError(CaseErrorCode.UNKNOWN_CASE, "案件不存在", detail="no case with this xt")
        if env.iss == self.region or env.iss not in (row.receiving_region, row.handling_region):
            raise CaseError(
                CaseErrorCode.NOT_A_PARTY,
                "发送方不是本案的当事地区",
                detail="sender is not a region of this case",
            )
        sender = sides_of(Mode(row.mode), row.receiving_region, row.handling_region, env.iss)
        check(action, state=Status(row.status), role=None, sides=sender)
        handler = registry.partner_handler(action.name)
        assert handler is not None, action.name
        await handler(Step(self, conn, row, actor, action, env), env)

    async def refuse_envelope(
        self, conn: AsyncConnection, envelope: Envelope, refusal: BusinessRefusal
    ) -> None:
        """Answer a refused message with ``case.error`` (never for a ``case.error`` itself)."""
        if envelope.typ == "case.error":
            return
        await self.outbox.enqueue(
            conn,
            partner=envelope.iss,
            typ="case.error",
            xt=envelope.xt,
            body={"code": refusal.code, "detail": refusal.detail[:500], "ref": envelope.jti},
            now=self.clock(),
        )

    # -- reading ---------------------------------------------------------------------------

    async def get(self, actor: Actor, case_id: int) -> dict[str, Any]:
        async with self.db.read() as conn:
            return await self._detail(conn, case_id)

    async def _detail(self, conn: AsyncConnection, case_id: int) -> dict[str, Any]:
        row = (await conn.execute(select(cases).where(cases.c.id == case_id))).first()
        if row is None:
            raise CaseError(CaseErrorCode.CASE_NOT_FOUND, "案件不存在")
        rated = list(
            (
                await conn.execute(
                    select(ratings).where(ratings.c.case_id == case_id).order_by(ratings.c.rated_at)
                )
            ).all()
        )
        events = await records.events(conn, case_id)
        return records.detail(row, events, today_in_china(self.clock()), rated)

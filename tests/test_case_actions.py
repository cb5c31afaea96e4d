"""The one path of every change of a case, as matrices over the state machine's table
(docs/architecture.md): every partner message type × sending side × state, and every staff
action × role × side held × state. Where ``lifecycle.ACTIONS`` does not allow it, the change
is refused with the check's code and the case, its events and its counters are as before;
where it allows it, the check lets it through to the action's handler."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from node.accounts.staff import ROLES
from node.appkeys import CASES
from node.cases.actions import registry
from node.cases.actor import Actor
from node.cases.errors import CaseError
from node.cases.lifecycle import (
    ACTIONS,
    MESSAGE_ACTIONS,
    PROVINCIAL_CODES,
    Mode,
    Status,
    action_for_message,
    sides_of,
)
from node.cases.models import case_due_counts, case_events, case_status_counts, cases
from node.cases.service import CaseService
from node.federation.applier import BusinessRefusal
from protocol.envelope import Envelope
from protocol.messages import MESSAGE_TYPES, example_body
from tests.support.databases import DatabaseFactory
from tests.support.nodes import RunningNode
from tests.support.regions import start_regions

HERE, THERE, STRANGER = "430400", "430523", "370500"
CHECK_CODES = {"wrong_side", "transition_not_allowed", "not_a_party", "forbidden"}
#: Which sides of a case the matrix's node holds, and how such a case looks.
HOLDINGS: dict[str, tuple[Mode, str, str]] = {
    "receiving": (Mode.PROXY, HERE, THERE),
    "handling": (Mode.PROXY, THERE, HERE),
    "both": (Mode.ONLINE, HERE, HERE),
}


class _Rollback(Exception):
    """Undo a cell's transaction, whatever it did."""


@pytest.fixture
async def node(tmp_path: Path, databases: DatabaseFactory) -> AsyncIterator[RunningNode]:
    nodes = await start_regions(tmp_path, databases, [(HERE, "衡阳市"), (THERE, "邵阳县")])
    yield nodes[0]
    for one in nodes:
        await one.stop()


def test_every_action_has_its_handlers_and_every_message_type_an_action() -> None:
    handlers = registry.registered()
    for name, action in ACTIONS.items():
        if action.by_staff:
            assert name in handlers["staff"], name
        if action.message is not None:
            assert name in handlers["partner"] | handlers["intake"], name
    assert handlers["staff"] <= {n for n, a in ACTIONS.items() if a.by_staff}
    assert set(MESSAGE_TYPES) == set(MESSAGE_ACTIONS)
    for typ in MESSAGE_TYPES:
        body, _blobs = example_body(typ)
        action = action_for_message(typ, body)
        assert action is not None and action.message == typ, typ
    assert action_for_message("case.supplemented", {"deferred": True}) is ACTIONS["catch_up"]


def test_a_second_registration_fails() -> None:
    with pytest.raises(registry.RegistrationError):
        registry.staff("accept")(registry.staff_handler("accept"))  # type: ignore[arg-type]
    with pytest.raises(registry.RegistrationError):
        registry.partner("no_such_action")


async def _insert_case(conn: AsyncConnection, holding: str, status: Status) -> int:
    mode, receiving, handling = HOLDINGS[holding]
    clocked = status in {Status.ACCEPTED, Status.SUPPLEMENT_PENDING, Status.INSPECTION}
    materials = [
        {
            "code": "m1",
            "name": "营业执照",
            "status": "deferred",
            "blob": None,
            "deferred_until": "2099-01-01",
        },
    ]
    details: dict[str, Any] = {}
    if status is Status.SUPPLEMENT_PENDING:
        details["supplement"] = {"items": [], "deadline": "2099-01-01", "resume_status": "accepted"}
    row_id = (
        await conn.execute(
            cases.insert()
            .values(
                case_no=f"{receiving}-20991231-{uuid.uuid4().int % 10**8:08d}",
                xt_id=f"XT-{receiving}-{uuid.uuid4().hex[:20]}",
                mode=str(mode),
                item_code=f"{handling}-XK-0001",
                item_name="公共场所卫生许可",
                receiving_region=receiving,
                handling_region=handling,
                partner_region=handling if receiving == HERE else receiving,
                status=str(status),
                status_code=PROVINCIAL_CODES[status],
                applicant_kind="person",
                applicant_name="周敏",
                applicant_id_type="resident_id",
                applicant_id_number="11010519491231002X",
                applicant_phone="13973900003",
                application=json.dumps({"materials": materials}, ensure_ascii=False),
                details=json.dumps(details, ensure_ascii=False),
                received_at=0.0,
                pauses="[]",
                paused=False,
                accepted_on="2026-11-02" if clocked else None,
                time_limit_days=20 if clocked else None,
                promised_date="2026-11-30" if clocked else None,
                deadline="2026-11-30" if clocked else None,
                warning_from="2026-11-25" if clocked else None,
                deferred_until="2099-01-01",
                deadline_provisional=False,
                created_at=0.0,
                updated_at=0.0,
                event_count=0,
                head_hash="",
            )
            .returning(cases.c.id)
        )
    ).scalar_one()
    return int(row_id)


async def _snapshot(conn: AsyncConnection, case_id: int) -> tuple[Any, ...]:
    row = (await conn.execute(select(cases).where(cases.c.id == case_id))).one()
    events = (
        await conn.execute(
            select(func.count()).select_from(case_events).where(case_events.c.case_id == case_id)
        )
    ).scalar_one()
    statuses = (await conn.execute(select(case_status_counts))).all()
    dues = (await conn.execute(select(case_due_counts))).all()
    return (tuple(row), events, sorted(map(tuple, statuses)), sorted(map(tuple, dues)))


async def _cases(node: RunningNode) -> dict[tuple[str, Status], int]:
    async with node.db.write() as conn:
        return {
            (holding, status): await _insert_case(conn, holding, status)
            for holding in HOLDINGS
            for status in Status
        }


async def _cell(
    node: RunningNode, case_id: int, run: Any
) -> tuple[str, tuple[Any, ...], tuple[Any, ...]]:
    """Run one cell in a transaction that is undone afterwards: its outcome ("applied" or the
    refusal's code) and the case before and after, as seen inside the transaction."""
    outcome = "applied"
    before = after = ()
    try:
        async with node.db.write() as conn:
            before = await _snapshot(conn, case_id)
            try:
                async with conn.begin_nested():
                    await run(conn)
            except (BusinessRefusal, CaseError) as refusal:
                outcome = str(refusal.code)
            after = await _snapshot(conn, case_id)
            raise _Rollback
    except _Rollback:
        pass
    return outcome, before, after


async def _envelope(
    node: RunningNode, typ: str, body: dict[str, Any], iss: str, xt: str
) -> Envelope:
    """A partner's message as the applier hands it over (its files stored, as the inbound
    store guarantees before it answers)."""
    _example, blobs = example_body(typ)
    text = json.dumps(body, ensure_ascii=False)
    stored = []
    for index, blob in enumerate(blobs):
        digest = await node.fed.blobs.put_bytes(b"%PDF-1.4 matrix " + str(index).encode())
        text = text.replace(blob["sha256"], digest)
        stored.append({**blob, "sha256": digest})
    return Envelope(
        iss=iss,
        aud=HERE,
        jti=str(uuid.uuid4()),
        iat=0,
        exp=0,
        typ=typ,
        xt=xt,
        seq=1,
        body=json.loads(text),
        blobs=stored,
        kid=f"{iss}:test",
        compact=b"",
        digest="",
    )


def _bodies() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for typ in MESSAGE_TYPES:
        body, _blobs = example_body(typ)
        out.append((typ, body))
        if typ == "case.supplemented":
            out.append((typ, {**body, "deferred": True}))
    return out


async def test_every_partner_message_in_every_state_from_either_side(node: RunningNode) -> None:
    service: CaseService = node.app[CASES]  # type: ignore[index]
    ids = await _cases(node)
    cells = refused = 0
    for typ, body in _bodies():
        action = action_for_message(typ, body)
        assert action is not None
        if action.name == "submit":
            continue  # a new case: tests/test_case_submit_rules below
        for holding in ("receiving", "handling"):
            mode, receiving, handling = HOLDINGS[holding]
            for status in Status:
                case_id = ids[(holding, status)]
                async with node.db.read() as conn:
                    xt = (
                        await conn.execute(select(cases.c.xt_id).where(cases.c.id == case_id))
                    ).scalar_one()
                for sender in (THERE, STRANGER):
                    env = await _envelope(node, typ, body, sender, xt)
                    outcome, before, after = await _cell(
                        node, case_id, lambda conn, env=env: service.apply_envelope(conn, env)
                    )
                    cells += 1
                    where = (typ, holding, str(status), sender, outcome)
                    side = sides_of(mode, receiving, handling, sender)
                    if sender == STRANGER:
                        expected = "not_a_party"
                    elif action.side is not None and action.side not in side:
                        expected = "wrong_side"
                    elif action.sources and status not in action.sources:
                        expected = "transition_not_allowed"
                    else:
                        expected = None
                    if expected is not None:
                        refused += 1
                        assert outcome == expected, where
                        assert after == before, where
                    else:
                        assert outcome not in CHECK_CODES, where
                        if outcome != "applied":
                            assert after == before, where
    # 17 bodies less case.submit, 2 holdings, 11 states, 2 senders.
    assert cells == 16 * 2 * len(Status) * 2
    assert refused > cells // 2


async def test_every_staff_action_by_every_role_on_every_side_in_every_state(
    node: RunningNode,
) -> None:
    service: CaseService = node.app[CASES]  # type: ignore[index]
    ids = await _cases(node)
    cells = 0
    for name, action in ACTIONS.items():
        if not action.by_staff:
            continue
        for role in (*ROLES, "citizen"):
            actor = Actor(f"matrix-{role}", "测试", role, HERE)
            for holding, (mode, receiving, handling) in HOLDINGS.items():
                held = sides_of(mode, receiving, handling, HERE)
                for status in Status:
                    case_id = ids[(holding, status)]
                    outcome, before, after = await _cell(
                        node,
                        case_id,
                        lambda conn, a=actor, c=case_id, n=name: service.act_in(conn, a, c, n, {}),
                    )
                    cells += 1
                    where = (name, role, holding, str(status), outcome)
                    if action.side is not None and action.side not in held:
                        expected = "wrong_side"
                    elif role not in action.roles:
                        expected = "forbidden"
                    elif action.sources and status not in action.sources:
                        expected = "transition_not_allowed"
                    else:
                        expected = None
                    if expected is not None:
                        assert outcome == expected, where
                        assert after == before, where
                    else:
                        assert outcome not in CHECK_CODES, where
                        if outcome != "applied":
                            assert after == before, where
    staff_actions = sum(a.by_staff for a in ACTIONS.values())
    assert cells == staff_actions * (len(ROLES) + 1) * len(HOLDINGS) * len(Status)


async def test_a_case_number_belongs_to_its_region(node: RunningNode) -> None:
    """case.submit with a number of ours, of a third region, or one already taken, is
    refused and stores nothing; our own numbering goes on."""
    service: CaseService = node.app[CASES]  # type: ignore[index]
    body, _blobs = example_body("case.submit")
    ids = await _cases(node)
    async with node.db.read() as conn:
        taken = (
            await conn.execute(
                select(cases.c.case_no).where(cases.c.id == ids[("handling", Status.FORWARDED)])
            )
        ).scalar_one()
    attempts = {
        f"{HERE}-20261201-00006": "case_no_not_yours",
        f"{STRANGER}-20261201-00006": "case_no_not_yours",
        taken: "duplicate_case",
    }
    for case_no, expected in attempts.items():
        env = await _envelope(
            node,
            "case.submit",
            {**body, "case_no": case_no},
            THERE,
            f"XT-{THERE}-{uuid.uuid4().hex[:20]}",
        )
        async with node.db.write() as conn:
            before = (await conn.execute(select(func.count()).select_from(cases))).scalar_one()
            with pytest.raises(BusinessRefusal) as refused:
                async with conn.begin_nested():
                    await service.apply_envelope(conn, env)
            assert refused.value.code == expected, case_no
            after = (await conn.execute(select(func.count()).select_from(cases))).scalar_one()
            assert after == before
    # A well-formed number of the sender's own is taken.
    env = await _envelope(
        node,
        "case.submit",
        {**body, "case_no": f"{THERE}-20261201-00006"},
        THERE,
        f"XT-{THERE}-{uuid.uuid4().hex[:20]}",
    )
    async with node.db.write() as conn:
        await service.apply_envelope(conn, env)

"""`tongban audit verify [CASE]`: check the hash chains of case event logs."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from sqlalchemy import select

from node.cases.audit import ChainFault, verify_chain
from node.cases.models import case_events, cases
from node.config import NodeConfig
from node.storage.database import Database


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    audit = sub.add_parser("audit", help="case audit log").add_subparsers()
    p = audit.add_parser("verify", help="verify the hash chain of every case (or one)")
    p.add_argument("case", nargs="?", help="case number (default: all cases)")
    p.add_argument("--dir", required=True, type=Path)
    p.set_defaults(func=_verify)


async def verify_cases(db: Database, case_no: str | None = None) -> tuple[int, list[ChainFault]]:
    """Verify the chains; returns (cases checked, faults)."""
    faults: list[ChainFault] = []
    checked = 0
    async with db.read() as conn:
        query = select(cases.c.id, cases.c.head_hash, cases.c.event_count).order_by(cases.c.id)
        if case_no is not None:
            query = query.where(cases.c.case_no == case_no)
        for case in (await conn.execute(query)).all():
            events = (
                await conn.execute(
                    select(case_events)
                    .where(case_events.c.case_id == case.id)
                    .order_by(case_events.c.id)
                )
            ).all()
            faults.extend(
                verify_chain(
                    case.id, list(events), head_hash=case.head_hash, event_count=case.event_count
                )
            )
            checked += 1
    return checked, faults


def _verify(args: argparse.Namespace) -> int:
    config = NodeConfig.load(args.dir)

    async def go() -> tuple[int, list[ChainFault]]:
        db = Database(config.database_url)
        try:
            return await verify_cases(db, args.case)
        finally:
            await db.dispose()

    checked, faults = asyncio.run(go())
    if args.case and checked == 0:
        print(f"未找到案件 case not found: {args.case}")
        return 1
    for fault in faults:
        where = f"event {fault.seq}" if fault.seq is not None else "case"
        print(f"篡改 TAMPERED case #{fault.case_id} {where}: {fault.problem}")
    if faults:
        print(
            f"{checked} 件案件中发现 {len(faults)} 处问题 ({len(faults)} faults in {checked} cases)"
        )
        return 1
    print(f"审计链完整 audit chains intact: {checked} 件案件 cases")
    return 0

"""`tongban demo`: three partnered regions on one machine (docs/operations.md), in one command.

Each region gets the demo catalogue (``node/demo_catalog/<region>.toml``: the sample items plus
more from real practice), staff with Chinese display names (password ``tongban-demo``), and —
while the three nodes run — demo cases in every state of the lifecycle, made through the staff
and public API like a window clerk, an approver and a citizen would: envelopes really travel
between the nodes and every case's audit chain is real. The cases made are listed in
``DIR/demo-cases.json`` (with their query codes: demo data only), so a second start adds none.

One job a module:

- `regions`: the three regions on disk (configs, partnering, catalogue, staff), made once;
- `people`: the made-up people and companies (well-formed ID numbers, the provider's people);
- `client`: talking to the running nodes through their API like people do (`Seeder`);
- `stories`: the demo cases, one story each, two of them backdated;
- `seeding`: making the cases not made before and keeping their list;
- `serving`: starting and stopping the regions and the identity provider;
- `banner`: the table of URLs, logins and cases printed once the demo runs.

`node.cli` imports this package only when `tongban demo` runs, so that `tongban --help` stays
quick.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from node.demo.serving import start
from node.logging_setup import configure_logging


def run_demo(base: Path, base_port: int) -> int:
    configure_logging()

    async def main() -> None:
        demo = await start(base, base_port)
        try:
            await asyncio.Event().wait()
        finally:
            await demo.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    return 0

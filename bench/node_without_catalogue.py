"""``python -m bench.node_without_catalogue run --dir DIR``: ``tongban run`` with the partner
catalogue refresher (node/catalog/refresher.py) not started.

For ``bench.partners --catalogue off`` only: it separates what delivery costs with thousands
of partners from what the catalogue refresher costs (it fetches every partner's catalogue at
start and retries each failed one from 30 s on). Never a way to run a node.
"""

from __future__ import annotations

import sys

from node.catalog.refresher import CatalogRefresher
from node.cli import main


def _not_started(_self: CatalogRefresher) -> None:
    return None


CatalogRefresher.start = _not_started  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main())

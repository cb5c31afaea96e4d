"""Every area's tables, on the one metadata (node/storage/metadata.py): what the migrations are
written against (env.py, for autogenerate) and checked against
(tests/test_migrations_match_models.py). An area with tables is imported here."""

import inspection.models  # noqa: F401  (imported for its tables)
import node.accounts.models
import node.cases.models
import node.catalog.models
import node.federation.models
import node.identity.models
import node.videocalls.models
import node.workdays.models  # noqa: F401  (imported for its tables)
from node.storage.metadata import metadata

__all__ = ["metadata"]

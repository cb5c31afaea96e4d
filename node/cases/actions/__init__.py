"""The case actions, one module per family; importing this package registers every handler
(node.cases.actions.registry). docs/architecture.md says how to add an action."""

from node.cases.actions import (  # noqa: F401 - each module registers its handlers
    acceptance,
    decision,
    handover,
    identity_check,
    inspection,
    personal_data,
    progress,
    rating,
    supplement,
    withdrawal,
)

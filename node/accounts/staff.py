"""Who staff are: the roles and the ``Staff`` value (re-exported by node.accounts.auth).

Kept apart from auth.py so that models, service and auth can all import it without a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("clerk", "approver", "inspector", "supervisor", "admin", "helper")

#: Chinese names of the roles, for people.
ROLE_LABELS = {
    "clerk": "收件人员",
    "approver": "审批人员",
    "inspector": "勘验人员",
    "supervisor": "监督人员",
    "admin": "系统管理员",
    "helper": "视频帮办",
}


@dataclass(frozen=True)
class Staff:
    user_id: int
    username: str
    display_name: str
    role: str
    region: str

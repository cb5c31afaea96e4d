"""Who performs an action on a case: a staff member, a partner region, a citizen or the node."""

from __future__ import annotations

from dataclasses import dataclass

from node.accounts.staff import Staff


@dataclass(frozen=True)
class Actor:
    #: Recorded as the event's ``actor`` (accountability): the login name, ``partner:<region>``,
    #: ``citizen`` or ``system``.
    username: str
    #: The person's name (姓名) for events and message bodies people read; None when unknown.
    display_name: str | None = None
    #: A staff member's role; None for anyone else.
    role: str | None = None
    #: A staff member's node region, or the partner's region.
    region: str | None = None
    #: Whether this is a partner node (its messages are checked by side, not by role).
    partner: bool = False

    @classmethod
    def of_staff(cls, staff: Staff) -> Actor:
        return cls(staff.username, staff.display_name, staff.role, staff.region)

    @classmethod
    def of_partner(cls, region: str) -> Actor:
        return cls(f"partner:{region}", None, None, region, partner=True)

    @classmethod
    def citizen(cls) -> Actor:
        return cls("citizen")

    @classmethod
    def system(cls) -> Actor:
        return cls("system")

    @property
    def name(self) -> str:
        """The name to show: the display name, else the login."""
        return self.display_name or self.username

"""Open files: every connection is one, and a node opens many at once.

A partner with a backlog gets a window of sends in flight (``[federation] window``), each on
its own connection (the partner client allows window + 4 per partner), so a node catching up
with a few partners after an outage holds thousands of sockets, on top of its database, blobs
and its own server's clients. Many systems start services with a soft limit of 1,024 open
files under a hard limit far above it; past the soft limit every ``socket()`` and ``open()``
fails (EMFILE): deliveries, but also receipts and the database.

``tongban run`` raises the soft limit to the hard one (at most ``WANTED``), as nginx's
``worker_rlimit_nofile`` and Go's runtime do; ``tongban doctor`` warns when the hard limit
leaves less than ``NEEDED`` (docs/operations.md, "Open files").
"""

from __future__ import annotations

import contextlib
import resource

#: The soft limit ``tongban run`` asks for (or the hard limit, if that is lower).
WANTED = 65536
#: Fewer than this and ``tongban doctor`` warns: about eight partners catching up at once with
#: the default window, plus the server's own clients.
NEEDED = 4096


def open_files_limits() -> tuple[int, int]:
    """The process's (soft, hard) limits of open files (an unlimited one as ``WANTED`` squared)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    unlimited = WANTED * WANTED
    return (
        unlimited if soft == resource.RLIM_INFINITY else soft,
        unlimited if hard == resource.RLIM_INFINITY else hard,
    )


def raise_open_files_limit() -> int:
    """Raise the soft limit of open files to ``usable_limit`` of the limits in force (never
    above the hard limit, never lowering it); returns the soft limit now in force."""
    soft, hard = open_files_limits()
    usable = usable_limit(soft, hard)
    if usable > soft:
        # A sandbox that refuses: keep what we have.
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(
                resource.RLIMIT_NOFILE, (usable, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
            )
    return open_files_limits()[0]


def usable_limit(soft: int, hard: int) -> int:
    """The limit ``tongban run`` will work with, given the limits it starts under."""
    return max(soft, min(WANTED, hard))

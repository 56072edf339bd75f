"""Tell a user's open websockets that their access to a project changed.

Every project and job socket also joins its user's group (`user.<id>`, built here from the
authenticated user's id, never from client strings). The membership services ring it after
commit; consumers of that project close at once: 4403 when the member was removed (the page
says "refused" and stops), 1012 when the role changed (the page reconnects and is authorized
again with the new role). The consumers' periodic resync re-checks access as a backstop for a
doorbell lost with Redis's data.
"""

from __future__ import annotations

from apps.jobs.events import ring

REMOVED = "removed"
ROLE_CHANGED = "role"


def user_group(user_id: int) -> str:
    return f"user.{int(user_id)}"


def ring_membership_revoked(*, user_id: int, project_id: int, reason: str) -> None:
    """Close `user_id`'s sockets on `project_id` (call after commit)."""
    ring(
        user_group(user_id),
        {"type": "membership.revoked", "project_id": int(project_id), "reason": reason},
    )

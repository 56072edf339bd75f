from functools import cached_property

from apps.review.selectors import inbox_count, review_accesses


class ReviewBadge:
    """The review link and count in the header, computed only when the header renders it."""

    def __init__(self, user):
        self.user = user

    @cached_property
    def reviewer(self) -> bool:
        return bool(review_accesses(user=self.user))

    @cached_property
    def count(self) -> int:
        return inbox_count(user=self.user) if self.reviewer else 0


def review_badge(request) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {"review_badge": ReviewBadge(user)}

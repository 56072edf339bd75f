"""Who may record which decision on a version. One rule: the decision service refuses with it,
and the version page disables its form with the same reason, so the form is never offered
where the server would refuse it."""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.translation import gettext

from apps.datasets.lineage import version_contributors
from apps.datasets.models import Approval, DatasetVersion
from apps.projects.models import Role


def decision_refusal(*, version: DatasetVersion, actor, role: str, approve: bool) -> str | None:
    """Why `actor` (with `role` in the project) may not approve or reject `version`, or None."""
    if role not in (Role.ADMIN, Role.REVIEWER):
        return gettext("Only reviewers and admins decide on datasets")
    if actor.pk in version_contributors(version):
        return gettext(
            "You imported or derived a version in this version's lineage: another reviewer "
            "must decide on it"
        )
    if approve and version.pii_report is None:
        return gettext(
            "Run a PII scan first: reviewers decide with the PII report in front of them"
        )
    return None


@dataclass(frozen=True)
class DecisionOptions:
    """What the version page's decision form offers: `refusal` disables all of it; an option's
    own refusal disables that option (no PII report for approve; the decision it already has,
    which recording again would not change)."""

    refusal: str | None
    approve_refusal: str | None
    reject_refusal: str | None

    @property
    def enabled(self) -> bool:
        return self.refusal is None and (
            self.approve_refusal is None or self.reject_refusal is None
        )


def decision_options(*, version: DatasetVersion, actor, role: str) -> DecisionOptions:
    """The decision form's state for this user: disabled, with the reason, where the service
    would refuse."""
    refusal = decision_refusal(version=version, actor=actor, role=role, approve=False)
    if refusal is not None:
        return DecisionOptions(refusal=refusal, approve_refusal=None, reject_refusal=None)
    approve = decision_refusal(version=version, actor=actor, role=role, approve=True)
    if approve is None and version.approval == Approval.APPROVED:
        approve = gettext("Already approved")
    reject = gettext("Already rejected") if version.approval == Approval.REJECTED else None
    if approve is not None and reject is not None:
        # Neither option is left: the reasons together are the form's.
        return DecisionOptions(
            refusal=f"{reject}. {approve}", approve_refusal=None, reject_refusal=None
        )
    return DecisionOptions(refusal=None, approve_refusal=approve, reject_refusal=reject)

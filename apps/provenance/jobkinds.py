"""The signer's job: record one closed batch's Merkle root on chain (queue `chain`); and, once
it is final, the CPU job that puts a C2PA-credentialed copy beside each of its images."""

from __future__ import annotations

from pydantic import BaseModel, Field

from apps.jobs.registry import JobKind, register, runner_at


class AnchorParams(BaseModel):
    model_config = {"extra": "forbid"}

    batch_id: int = Field(..., ge=1, title="Anchor batch")


def check_anchor(project, params: AnchorParams, *, user=None) -> dict[str, str]:
    """Only the platform starts anchoring (the batcher, a staff retry), for a batch of this
    project: a member's API call cannot make the signer spend gas."""
    from apps.provenance.models import AnchorBatch

    if user is not None:
        return {"batch_id": "Anchoring jobs are started by the platform, not by users"}
    if not AnchorBatch.objects.filter(pk=params.batch_id, project=project).exists():
        return {"batch_id": "No such anchor batch in this project"}
    return {}


register(
    JobKind(
        name="chain.anchor",
        label="Record on chain",
        queue="chain",
        params=AnchorParams,
        runner=runner_at("apps.provenance.runners:run_anchor"),
        description=(
            "Signs and sends the transaction that records a batch's Merkle root, waits for its "
            "receipt and confirmations, and replaces it when it is stuck."
        ),
        launchable=False,
        check=check_anchor,
        # Every step is saved on the batch row: a warm shutdown stops the wait and the next
        # worker resumes from the batch's state.
        interruptible=True,
    )
)


class CredentialsParams(BaseModel):
    model_config = {"extra": "forbid"}

    batch_id: int = Field(..., ge=1, title="Anchor batch")


def check_credentials(project, params: CredentialsParams, *, user=None) -> dict[str, str]:
    """Only the platform starts it, when a batch is final. The batch may be another project's
    (records share leaves across projects): the job credentials this project's images only."""
    from apps.provenance.models import AnchorBatch

    if user is not None:
        return {"batch_id": "Content Credentials jobs are started by the platform, not by users"}
    if not AnchorBatch.objects.filter(pk=params.batch_id).exists():
        return {"batch_id": "No such anchor batch"}
    return {}


register(
    JobKind(
        name="provenance.credentials",
        label="Content Credentials",
        queue="cpu",
        params=CredentialsParams,
        runner=runner_at("apps.provenance.credentials:run_credentials"),
        description=(
            "Writes a copy of each final image of an anchor batch with a signed C2PA manifest "
            "naming the model and the on-chain record; the recorded original is not changed."
        ),
        launchable=False,
        check=check_credentials,
    )
)

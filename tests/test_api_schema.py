"""Schemathesis against the native API's own OpenAPI schema (/api/v1/schema): every operation
is called with generated data (valid and invalid) through Django's WSGI handler, as an admin of a
seeded project with a Bearer token. No call may answer 5xx, and every response must match what
the schema says for its status (bodies, error shape included).

Path ids are those of the seeded rows, so the operations answer with real objects (a 200 body
is checked against its schema, not only 404s); query strings and bodies are generated. Junk in
paths is tests/test_fuzz_routes.py's job.

One test per operation, driven by Hypothesis through `APIOperation.as_strategy`: schemathesis'
own pytest loader for a fixture (`schemathesis.pytest.from_fixture`) reads a private attribute
that pytest 9.2 removed (`Function._nodeid`), and the schema needs the test database to load.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import schemathesis
from django.conf import settings as django_settings
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import response_schema_conformance

from apps.api.tokens import token_create
from apps.datasets.services import dataset_import
from apps.jobs.models import Job
from apps.jobs.states import JobState
from apps.models.models import Adapter, BaseModel
from apps.models.services import ensure_builtin_rows
from apps.outputs.models import Collection
from apps.projects.models import Membership
from apps.provenance.models import AnchorBatch, BatchState, ProvenanceRecord, RecordState
from tests import factories
from workers.chain.merkle import build_tree, leaf_for_sha256

SCHEMA_URL = "/api/v1/schema"
# About 35 operations × 2 modes (valid and invalid data) × this many examples each: the file
# stays under a minute.
MAX_EXAMPLES = 5

pytestmark = pytest.mark.slow


@pytest.fixture
def seeded(project, people, tmp_path) -> dict:
    """A project with one of everything the API lists, and the ids its paths name."""
    member, admin = people["member"], people["admin"]
    job = factories.make_job(project, member)
    Job.objects.filter(pk=job.pk).update(state=JobState.FAILED, error="boom")
    csv_path = tmp_path / "qa.csv"
    csv_path.write_text("question,answer\nWhat is BP?,Blood pressure.\nHi,Hello\n")
    version, _ = dataset_import(
        project=project,
        actor=member,
        upload_path=csv_path,
        filename="qa.csv",
        name="QA",
        license="CC0-1.0",
        source="tests",
    )
    ensure_builtin_rows()
    folder = Path(django_settings.MEDIA_ROOT) / "adapters" / str(project.pk) / "1"
    (folder / "adapter").mkdir(parents=True, exist_ok=True)
    (folder / "adapter.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)
    adapter = Adapter.objects.create(
        project=project,
        name="qa-lora",
        base_model=BaseModel.objects.get(reference="tiny-llama"),
        storage_path=f"adapters/{project.pk}/1/adapter",
        created_by=member,
    )
    output = factories.make_output(project, member, job=job, text="a fine answer")
    factories.make_output(project, member, text="held back", moderation="flagged")
    board = Collection.objects.create(project=project, name="Picks", created_by=admin)
    board.outputs.add(output)
    leaf = leaf_for_sha256(output.sha256)
    tree = build_tree([leaf])
    batch = AnchorBatch.objects.create(
        project=project,
        chain_id=31337,
        contract="0x" + "ab" * 20,
        state=BatchState.MINED,
        root="0x" + tree.root.hex(),
        count=1,
        tx_hash="0x" + "11" * 32,
        block_number=3,
    )
    ProvenanceRecord.objects.create(
        output=output,
        project=project,
        sha256=output.sha256,
        leaf="0x" + leaf.hex(),
        state=RecordState.BATCHED,
        batch=batch,
        leaf_index=0,
        proof=[],
    )
    _, token = token_create(user=admin, name="schemathesis", project_id=project.pk)
    return {
        "token": token,
        "ids": {
            "project_id": project.pk,
            "job_id": job.pk,
            "dataset_id": version.dataset_id,
            "number": version.number,
            "model_id": adapter.base_model_id,
            "adapter_id": adapter.pk,
            "output_id": output.pk,
            "collection_id": board.pk,
            "membership_id": Membership.objects.get(project=project, user=people["viewer"]).pk,
            "sha256": output.sha256,
        },
    }


def _operations() -> list:
    """(method, path) of every operation the schema describes (read at collection: one test
    each, named after it)."""
    from apps.api.native import api

    paths = api.get_openapi_schema(path_prefix=SCHEMA_URL.rsplit("/", 1)[0])["paths"]
    return [
        pytest.param(method.upper(), path, id=f"{method.upper()} {path}")
        for path, ops in paths.items()
        for method in ops
    ]


@pytest.fixture(scope="module")
def api_schema():
    """The schema as the app serves it (loaded once: describing the API reads no rows), with
    calls going to the app through WSGI. As Django's test client does, the handler leaves the
    test's database connection open between requests (request signals close it otherwise, and
    the test's transaction with it)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.openapi.from_wsgi(SCHEMA_URL, get_wsgi_application())
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def test_the_schema_is_valid_openapi_3_and_describes_every_operation(api_schema):
    results = list(api_schema.get_all_operations())

    assert api_schema.raw_schema["openapi"].startswith("3.")
    assert [r.err() for r in results if not isinstance(r, Ok)] == []
    assert len(results) == len(_operations()) >= 30


def test_the_served_schema_has_no_duplicate_keys(client, db):
    """Python's JSON reader keeps the last of two equal keys; the docs page's reader (Swagger UI)
    refuses the whole schema ("duplicated mapping key"), as strict readers do."""
    duplicates = []

    def strict(pairs):
        keys = [k for k, _ in pairs]
        duplicates.extend(k for k in set(keys) if keys.count(k) > 1)
        return dict(pairs)

    json.loads(client.get(SCHEMA_URL).content, object_pairs_hook=strict)

    assert duplicates == []


@pytest.mark.parametrize(("method", "path"), _operations())
def test_an_operation_answers_without_5xx_and_as_its_schema_says(api_schema, seeded, method, path):
    operation = api_schema[path][method]
    ids = {k: v for k, v in seeded["ids"].items() if "{" + k + "}" in path}
    headers = {"Authorization": f"Bearer {seeded['token']}"}

    statuses: list[int] = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

        @given(case=operation.as_strategy(mode, path_parameters=ids))
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,  # no example database written into the checkout
            suppress_health_check=list(HealthCheck),
        )
        def call(case):
            response = case.call_and_validate(
                headers=headers, checks=[not_a_server_error, response_schema_conformance]
            )
            statuses.append(response.status_code)

        try:
            call()
        except Unsatisfiable:
            # Nothing in this operation can be made invalid (its only input is the seeded path).
            assert mode == GenerationMode.NEGATIVE

    # The admin's token opened every door: the calls reached the operation, not the auth check.
    assert statuses and 401 not in statuses and 403 not in statuses, statuses

"""The job state machine, applied to real rows: every (source, target) pair is its own case."""

from __future__ import annotations

import itertools

import pytest

from apps.jobs.models import EventKind, Job, JobEvent
from apps.jobs.services import job_transition
from apps.jobs.states import (
    TERMINAL,
    TRANSITIONS,
    IllegalTransition,
    JobState,
    can_transition,
    sources_for,
)

STATES = list(JobState.values)
PAIRS = list(itertools.product(STATES, STATES))

# The machine of DESIGN.md ("The job engine"): queued → running → succeeded | failed | cancelled,
# plus cancelling; the reaper may put a running job back to queued.
DESIGNED = {
    ("queued", "running"),
    ("queued", "cancelled"),
    ("queued", "failed"),
    ("running", "succeeded"),
    ("running", "failed"),
    ("running", "cancelling"),
    ("running", "cancelled"),
    ("running", "queued"),
    ("cancelling", "cancelled"),
    ("cancelling", "succeeded"),
    ("cancelling", "failed"),
}


def _job_in(project, state: str) -> Job:
    return Job.objects.create(
        project=project, kind="test.steps", queue="cpu", params={"steps": 1}, state=state
    )


def _pair_id(pair) -> str:
    return f"{pair[0]}->{pair[1]}"


@pytest.mark.parametrize(("source", "target"), PAIRS, ids=[_pair_id(p) for p in PAIRS])
def test_every_pair_moves_the_row_only_when_the_machine_allows_it(project, source, target):
    job = _job_in(project, source)

    if can_transition(source, target):
        assert job_transition(job_id=job.pk, target=target, sources=[source]) is True
        job.refresh_from_db()
        assert job.state == target
        events = list(JobEvent.objects.filter(job=job))
        assert [(e.seq, e.kind, e.data["state"]) for e in events] == [(1, EventKind.STATE, target)]
        assert job.last_seq == 1
    else:
        with pytest.raises(IllegalTransition) as info:
            job_transition(job_id=job.pk, target=target, sources=[source])
        assert (info.value.source, info.value.target) == (source, target)
        job.refresh_from_db()
        assert job.state == source
        assert job.last_seq == 0
        assert not JobEvent.objects.filter(job=job).exists()


LEGAL = sorted(DESIGNED)


@pytest.mark.parametrize(("source", "target"), LEGAL, ids=[_pair_id(p) for p in LEGAL])
def test_a_transition_from_a_state_the_row_is_not_in_changes_nothing(project, source, target):
    actual = next(s for s in STATES if s != source)
    job = _job_in(project, actual)

    assert job_transition(job_id=job.pk, target=target, sources=[source]) is False

    job.refresh_from_db()
    assert job.state == actual
    assert job.last_seq == 0
    assert not JobEvent.objects.filter(job=job).exists()


@pytest.mark.parametrize("state", sorted(TERMINAL))
def test_terminal_states_have_no_outgoing_transitions(state):
    assert TRANSITIONS[state] == frozenset()
    assert not any(can_transition(state, target) for target in STATES)
    assert all(state not in sources_for(target) for target in STATES)


def test_the_machine_allows_exactly_the_designed_transitions():
    allowed = {(s, t) for s, t in PAIRS if can_transition(s, t)}
    assert allowed == DESIGNED
    assert set(TRANSITIONS) == set(STATES)


def test_the_terminal_states_are_exactly_the_states_without_a_way_out():
    assert set(TERMINAL) == {s for s in STATES if not TRANSITIONS[s]}


def test_a_transition_with_any_illegal_source_is_refused_before_touching_the_row(project):
    job = _job_in(project, JobState.QUEUED)

    with pytest.raises(IllegalTransition):
        job_transition(
            job_id=job.pk, target=JobState.RUNNING, sources=[JobState.QUEUED, JobState.SUCCEEDED]
        )

    job.refresh_from_db()
    assert job.state == JobState.QUEUED
    assert not JobEvent.objects.filter(job=job).exists()

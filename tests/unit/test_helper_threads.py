"""Helper threads kept between jobs (workers/tasks/threads.py): reused, with their connection."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from workers.tasks.threads import IDLE_NAME, ThreadCache


@pytest.fixture
def caches():
    """Thread caches of a test, their idle helpers ended after it (they hold connections to the
    test database, which its teardown drops)."""
    made: list[ThreadCache] = []

    def make(idle: float) -> ThreadCache:
        made.append(ThreadCache(lambda: idle))
        return made[-1]

    yield make
    for cache in made:
        cache.close_idle()


def run_and_wait(cache: ThreadCache, task, name: str = "task") -> None:
    assert cache.run(task, name).wait(10)


@pytest.mark.django_db(transaction=True)
def test_a_finished_task_leaves_its_thread_and_connection_for_the_next_one(caches):
    cache = caches(30.0)
    seen = []

    def task():
        connection.ensure_connection()
        seen.append(
            (threading.current_thread(), id(connection.connection), threading.current_thread().name)
        )

    run_and_wait(cache, task, "events-job-1")
    run_and_wait(cache, task, "events-job-2")
    (t1, c1, n1), (t2, c2, n2) = seen
    assert t1 is t2 and c1 == c2  # one thread, one connection, for both jobs
    assert (n1, n2) == ("events-job-1", "events-job-2")
    assert t1.name == IDLE_NAME and cache.idle_count() == 1


@pytest.mark.django_db(transaction=True)
def test_tasks_at_the_same_time_get_threads_of_their_own(caches):
    cache = caches(30.0)
    both_in = threading.Barrier(2, timeout=10)
    threads = []

    def task():
        threads.append(threading.current_thread())
        both_in.wait()  # would time out if the second task waited for the first one's thread

    first, second = cache.run(task, "a"), cache.run(task, "b")
    assert first.wait(10) and second.wait(10)
    assert threads[0] is not threads[1] and cache.idle_count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_task_that_raised_or_left_a_transaction_open_does_not_hand_on_its_thread(caches):
    cache = caches(30.0)
    seen = []

    def opens_transaction():
        seen.append(threading.current_thread())
        connection.set_autocommit(False)
        connection.in_atomic_block = True  # as a task that returned inside atomic() would

    def raises():
        seen.append(threading.current_thread())
        connection.ensure_connection()
        raise RuntimeError("boom")

    fresh = []

    def looks():
        seen.append(threading.current_thread())
        fresh.append(connection.connection is None and not connection.in_atomic_block)

    for task in (opens_transaction, looks, raises, looks):
        run_and_wait(cache, task)
    assert seen[0] is not seen[1] and seen[2] is not seen[3]
    assert fresh == [True, True]
    seen[0].join(5)
    seen[2].join(5)
    assert not seen[0].is_alive() and not seen[2].is_alive()  # ended, connection closed


def test_without_idle_time_each_task_has_a_thread_that_ends():
    cache = ThreadCache(lambda: 0.0)
    threads = []
    for _ in range(2):
        run_and_wait(cache, lambda: threads.append(threading.current_thread()))
    threads[0].join(5)
    threads[1].join(5)
    assert threads[0] is not threads[1]
    assert not threads[0].is_alive() and not threads[1].is_alive() and cache.idle_count() == 0


def test_an_idle_thread_ends_after_its_idle_time():
    cache = ThreadCache(lambda: 0.2)
    threads = []
    run_and_wait(cache, lambda: threads.append(threading.current_thread()))
    threads[0].join(10)
    assert not threads[0].is_alive() and cache.idle_count() == 0

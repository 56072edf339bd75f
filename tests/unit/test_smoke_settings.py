def test_redis_used_by_the_suite_answers():
    from django.conf import settings

    from tests.harness import redis_answers

    assert redis_answers(settings.REDIS_URL)

def test_redis_used_by_the_suite_answers():
    from django.conf import settings

    from tests.harness import redis_answers

    assert redis_answers(settings.REDIS_URL)


def test_static_urls_are_plain_until_collectstatic_has_run(tmp_path):
    """make run and the tests never run collectstatic, and DEBUG is off: links must still work."""
    from webapp.staticfiles import StaticFilesStorage

    storage = StaticFilesStorage(location=tmp_path, base_url="/static/")

    assert storage.url("css/atelier.css") == "/static/css/atelier.css"


def test_static_urls_are_hashed_once_collectstatic_has_run(tmp_path):
    import json

    from webapp.staticfiles import StaticFilesStorage

    manifest = {"paths": {"css/atelier.css": "css/atelier.0123456789ab.css"}, "version": "1.1"}
    (tmp_path / "staticfiles.json").write_text(json.dumps(manifest))
    storage = StaticFilesStorage(location=tmp_path, base_url="/static/")

    assert storage.url("css/atelier.css") == "/static/css/atelier.0123456789ab.css"

"""Static files with or without `collectstatic`.

Production images run `collectstatic` (deploy/start-web.sh): pages then link hashed, compressed
files that browsers cache for good. `make run` and the tests never run it: with no manifest the
plain names are linked, and WhiteNoise serves them straight from static/ (its finders). DEBUG no
longer decides this, so DEBUG can stay off by default. (A collectstatic run by hand on a
development machine leaves a manifest behind: delete var/staticfiles to go back to live files.)
"""

from whitenoise.storage import CompressedManifestStaticFilesStorage


class StaticFilesStorage(CompressedManifestStaticFilesStorage):
    def stored_name(self, name: str) -> str:
        if not self.hashed_files:
            return name  # collectstatic has not run here
        # With a manifest a missing entry is still an error: a broken link found at once.
        return super().stored_name(name)

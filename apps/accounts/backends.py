"""Login throttling: django-axes' lockout check in front of Django's password check."""

from axes.backends import AxesStandaloneBackend


class LoginThrottleBackend(AxesStandaloneBackend):
    """Refuses a login while its username or its client's address is locked out.

    Every login a person makes comes with a request (the login page, the admin login) and is
    throttled. A login without one (the test client's ``login()``, a shell) has no client to
    throttle: axes would raise, so it is left to the password check alone. Code that checks a
    password sent over HTTP must pass ``request`` to ``authenticate()``.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)

"""`requests.auth`: the authentication helpers generators use."""

import base64


class AuthBase:
    """Base of the auth callables: called with the prepared request, returns it."""

    def __call__(self, request):
        raise NotImplementedError("auth hooks must be callable")


class HTTPBasicAuth(AuthBase):
    """HTTP basic authentication."""

    def __init__(self, username, password):
        self.username = username
        self.password = password

    def __eq__(self, other):
        return (self.username, self.password) == (
            getattr(other, "username", None),
            getattr(other, "password", None),
        )

    def __call__(self, request):
        request.headers["Authorization"] = _basic_auth_str(self.username, self.password)
        return request


class HTTPProxyAuth(HTTPBasicAuth):
    """Proxy authentication (there is no proxy in the sandbox; kept for imports)."""

    def __call__(self, request):
        request.headers["Proxy-Authorization"] = _basic_auth_str(self.username, self.password)
        return request


def _basic_auth_str(username, password):
    if isinstance(username, str):
        username = username.encode("latin1")
    if isinstance(password, str):
        password = password.encode("latin1")
    return "Basic " + base64.b64encode(b":".join((username, password))).decode("ascii")

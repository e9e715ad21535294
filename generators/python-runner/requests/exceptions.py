"""The exceptions of `requests`, with its names and hierarchy, so a generator's
`except requests.exceptions.HTTPError:` and the cached `error_type` read as they did."""

import json


class RequestException(IOError):
    """Something went wrong with a request."""

    def __init__(self, *args, response=None, request=None):
        super().__init__(*args)
        self.response = response
        self.request = request if request is not None else getattr(response, "request", None)


class InvalidJSONError(RequestException):
    """A JSON error occurred."""


class JSONDecodeError(InvalidJSONError, json.JSONDecodeError):
    """The response body is not JSON."""

    def __init__(self, msg, doc, pos):
        json.JSONDecodeError.__init__(self, msg, doc, pos)
        RequestException.__init__(self, self.args[0])

    def __reduce__(self):
        return json.JSONDecodeError.__reduce__(self)


class HTTPError(RequestException):
    """The server answered 4xx or 5xx (`raise_for_status`)."""


class ConnectionError(RequestException):
    """The server could not be reached (or httpsd refused the host)."""


class ProxyError(ConnectionError):
    """A proxy error."""


class SSLError(ConnectionError):
    """A TLS error."""


class Timeout(RequestException):
    """The request timed out."""


class ConnectTimeout(ConnectionError, Timeout):
    """Connecting timed out."""


class ReadTimeout(Timeout):
    """The server sent nothing in time."""


class URLRequired(RequestException):
    """No URL."""


class TooManyRedirects(RequestException):
    """Too many redirects."""


class MissingSchema(RequestException, ValueError):
    """The URL has no scheme."""


class InvalidSchema(RequestException, ValueError):
    """The URL's scheme is not http or https."""


class InvalidURL(RequestException, ValueError):
    """The URL is not valid."""


class InvalidHeader(RequestException, ValueError):
    """A header is not valid."""


class ChunkedEncodingError(RequestException):
    """The body was cut short."""


class ContentDecodingError(RequestException):
    """The body could not be decoded."""

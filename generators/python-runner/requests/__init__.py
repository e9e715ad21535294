"""`requests` for `.py` generators in httpsd's sandbox.

The real package sends through urllib3 and sockets, which the sandbox does not have.
This one keeps the part of its API that target generators use (`get`, `post`, ...,
`Session`, `params`, `headers`, `auth`, `json`, `data`, `timeout`, redirects,
`Response.json()`, `.raise_for_status()`, the exception classes) and sends through
wasi:http (httpshim), to the hosts the generator's manifest allows. A refused host is a
`requests.ConnectionError` whose message says so. Not there: cookies kept across
requests, streaming uploads, proxies, client certificates, `verify=False` (the host
always verifies TLS), retries through urllib3 adapters.
"""

import datetime
import json as _json
import time
import urllib.parse

import httpshim

from . import auth, exceptions
from .exceptions import (
    ConnectionError,
    ConnectTimeout,
    HTTPError,
    JSONDecodeError,
    ReadTimeout,
    RequestException,
    Timeout,
    TooManyRedirects,
)

__all__ = [
    "ConnectionError",
    "ConnectTimeout",
    "HTTPError",
    "JSONDecodeError",
    "ReadTimeout",
    "RequestException",
    "Response",
    "Session",
    "Timeout",
    "TooManyRedirects",
    "auth",
    "codes",
    "delete",
    "exceptions",
    "get",
    "head",
    "options",
    "patch",
    "post",
    "put",
    "request",
    "session",
]

__version__ = "2.32.3"

MAX_REDIRECTS = 30


class CaseInsensitiveDict(dict):
    """Headers: keys compare without case, and keep the case they were set with."""

    def __init__(self, data=None, **kwargs):
        super().__init__()
        self._names = {}
        self.update(data or {}, **kwargs)

    def __setitem__(self, key, value):
        lower = key.lower()
        old = self._names.get(lower)
        if old is not None and old != key:
            super().__delitem__(old)
        self._names[lower] = key
        super().__setitem__(key, value)

    def __getitem__(self, key):
        return super().__getitem__(self._names.get(key.lower(), key))

    def __delitem__(self, key):
        name = self._names.pop(key.lower())
        super().__delitem__(name)

    def __contains__(self, key):
        return isinstance(key, str) and key.lower() in self._names

    def get(self, key, default=None):
        return self[key] if key in self else default

    def pop(self, key, *default):
        if key in self:
            value = self[key]
            del self[key]
            return value
        if default:
            return default[0]
        raise KeyError(key)

    def setdefault(self, key, default=None):
        if key not in self:
            self[key] = default
        return self[key]

    def update(self, data=(), **kwargs):
        items = data.items() if hasattr(data, "items") else data
        for key, value in list(items) + list(kwargs.items()):
            self[key] = value

    def copy(self):
        return CaseInsensitiveDict(self)


class _Codes(dict):
    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


codes = _Codes(
    ok=200, created=201, accepted=202, no_content=204, moved_permanently=301,
    found=302, see_other=303, not_modified=304, temporary_redirect=307,
    permanent_redirect=308, bad_request=400, unauthorized=401, forbidden=403,
    not_found=404, conflict=409, too_many_requests=429, internal_server_error=500,
    bad_gateway=502, service_unavailable=503, gateway_timeout=504,
)  # fmt: skip


class PreparedRequest:
    """What is sent: what an auth callable receives and returns."""

    def __init__(self, method, url, headers, body):
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body

    def __repr__(self):
        return f"<PreparedRequest [{self.method}]>"


class Response:
    """The answer to a request."""

    def __init__(self):
        self.status_code = None
        self.reason = ""
        self.headers = CaseInsensitiveDict()
        self._content = b""
        self.url = ""
        self.encoding = None
        self.history = []
        self.request = None
        self.elapsed = datetime.timedelta(0)
        self.cookies = {}

    def __repr__(self):
        return f"<Response [{self.status_code}]>"

    def __bool__(self):
        return self.ok

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    @property
    def ok(self):
        try:
            self.raise_for_status()
        except HTTPError:
            return False
        return True

    @property
    def is_redirect(self):
        return "location" in self.headers and self.status_code in (301, 302, 303, 307, 308)

    @property
    def content(self):
        return self._content

    @property
    def apparent_encoding(self):
        return "utf-8"

    @property
    def text(self):
        encoding = self.encoding or self.apparent_encoding
        try:
            return self._content.decode(encoding, errors="replace")
        except LookupError:
            return self._content.decode("utf-8", errors="replace")

    def json(self, **kwargs):
        try:
            return _json.loads(self.text, **kwargs)
        except _json.JSONDecodeError as e:
            raise JSONDecodeError(e.msg, e.doc, e.pos) from None

    def iter_content(self, chunk_size=1, decode_unicode=False):
        data = self.text if decode_unicode else self._content
        size = chunk_size or len(data) or 1
        for at in range(0, len(data), size):
            yield data[at : at + size]

    def iter_lines(self, chunk_size=512, decode_unicode=False, delimiter=None):
        data = self.text if decode_unicode else self._content
        yield from (data.split(delimiter) if delimiter else data.splitlines())

    @property
    def links(self):
        return {}

    def raise_for_status(self):
        reason = self.reason
        if 400 <= self.status_code < 500:
            message = f"{self.status_code} Client Error: {reason} for url: {self.url}"
        elif 500 <= self.status_code < 600:
            message = f"{self.status_code} Server Error: {reason} for url: {self.url}"
        else:
            return
        raise HTTPError(message, response=self)

    def close(self):
        return None


def _encoding_of(content_type):
    """The charset of a Content-Type; ISO-8859-1 for text/* without one, as requests."""
    if not content_type:
        return None
    kind, _, rest = content_type.partition(";")
    for param in rest.split(";"):
        key, _, value = param.strip().partition("=")
        if key.lower() == "charset":
            return value.strip("'\" ")
    if kind.strip().startswith("text/"):
        return "ISO-8859-1"
    if kind.strip() == "application/json":
        return "utf-8"
    return None


def _with_params(url, params):
    if not params:
        return url
    if isinstance(params, (str, bytes)):
        query = params if isinstance(params, str) else params.decode()
    else:
        items = params.items() if hasattr(params, "items") else params
        pairs = []
        for key, value in items:
            if value is None:
                continue
            values = value if isinstance(value, (list, tuple)) else [value]
            pairs.extend((key, v) for v in values)
        query = urllib.parse.urlencode(pairs)
    if not query:
        return url
    base, _, fragment = url.partition("#")
    joined = base + ("&" if "?" in base else "?") + query
    return joined + (f"#{fragment}" if fragment else "")


def _body(data, json, headers):
    if json is not None and not data:
        headers.setdefault("Content-Type", "application/json")
        return _json.dumps(json, allow_nan=False).encode("utf-8")
    if data is None or data == {} or data == []:
        return None
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    if hasattr(data, "read"):
        chunk = data.read()
        return chunk.encode("utf-8") if isinstance(chunk, str) else chunk
    items = data.items() if hasattr(data, "items") else data
    headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    return urllib.parse.urlencode(list(items), doseq=True).encode("ascii")


def _timeouts(timeout):
    """(wait for the answer, wait for each read) in seconds, or None."""
    if timeout is None:
        return None, None
    if isinstance(timeout, tuple):
        connect, read = timeout
        if connect is None or read is None:
            return None, read
        return connect + read, read
    return timeout, timeout


def _check_url(url):
    if not isinstance(url, str):
        url = url.decode() if isinstance(url, bytes) else str(url)
    parts = urllib.parse.urlsplit(url)
    if not parts.scheme:
        raise exceptions.MissingSchema(
            f"Invalid URL {url!r}: No scheme supplied. Perhaps you meant https://{url}?"
        )
    if parts.scheme not in ("http", "https"):
        raise exceptions.InvalidSchema(f"No connection adapters were found for {url!r}")
    if not parts.hostname:
        raise exceptions.InvalidURL(f"Invalid URL {url!r}: No host supplied")
    return url


class Session:
    """Shared headers, auth and params for many requests (no connection pooling: the
    host keeps no connection across requests)."""

    def __init__(self):
        self.headers = CaseInsensitiveDict(
            {
                "User-Agent": f"python-requests/{__version__} (httpsd)",
                "Accept-Encoding": "identity",
                "Accept": "*/*",
            }
        )
        self.auth = None
        self.params = {}
        self.cookies = {}
        self.verify = True
        self.proxies = {}
        self.max_redirects = MAX_REDIRECTS
        self.adapters = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        return None

    def mount(self, prefix, adapter):
        """Kept for code that mounts retry adapters; requests go out as they are."""
        self.adapters[prefix] = adapter

    def request(self, method, url, params=None, data=None, headers=None, cookies=None,
                files=None, auth=None, timeout=None, allow_redirects=True, proxies=None,
                hooks=None, stream=None, verify=None, cert=None, json=None):  # fmt: skip
        if files:
            raise NotImplementedError("file uploads are not supported in httpsd's sandbox")
        method = method.upper()
        merged = CaseInsensitiveDict(self.headers)
        merged.update(headers or {})
        for name in [k for k, v in merged.items() if v is None]:
            del merged[name]
        url = _with_params(_with_params(_check_url(url), self.params), params)
        body = _body(data, json, merged)
        prepared = PreparedRequest(method, url, merged, body)
        auth = auth if auth is not None else self.auth
        if isinstance(auth, tuple) and len(auth) == 2:
            auth = _auth.HTTPBasicAuth(*auth)
        if auth is not None:
            prepared = auth(prepared)
        return self._send(prepared, timeout, allow_redirects)

    def _send(self, prepared, timeout, allow_redirects):
        history = []
        answer_wait, read_wait = _timeouts(timeout)
        started = time.monotonic()
        while True:
            response = self._once(prepared, answer_wait, read_wait)
            response.elapsed = datetime.timedelta(seconds=time.monotonic() - started)
            if not (allow_redirects and response.is_redirect):
                response.history = history
                return response
            history.append(response)
            if len(history) > self.max_redirects:
                raise TooManyRedirects(
                    f"Exceeded {self.max_redirects} redirects.", response=response
                )
            location = urllib.parse.urljoin(prepared.url, response.headers["location"])
            method, body = prepared.method, prepared.body
            if response.status_code == 303 and method != "HEAD" or (
                response.status_code in (301, 302) and method == "POST"
            ):
                method, body = "GET", None
                prepared.headers.pop("Content-Type", None)
            if urllib.parse.urlsplit(location).netloc != urllib.parse.urlsplit(prepared.url).netloc:
                prepared.headers.pop("Authorization", None)
            prepared = PreparedRequest(method, location, prepared.headers, body)

    def _once(self, prepared, answer_wait, read_wait):
        try:
            status, header_list, payload = httpshim.send(
                prepared.method,
                prepared.url,
                prepared.headers.items(),
                prepared.body,
                answer_wait,
            )
        except httpshim.TransportError as e:
            if e.kind == "timeout":
                raise ReadTimeout(str(e), request=prepared) from None
            raise ConnectionError(str(e), request=prepared) from None
        response = Response()
        response.status_code = status
        response.reason = httpshim.reason(status)
        for name, value in header_list:
            if name in response.headers:
                response.headers[name] = response.headers[name] + ", " + value
            else:
                response.headers[name] = value
        response._content = payload
        response.url = prepared.url
        response.encoding = _encoding_of(response.headers.get("content-type"))
        response.request = prepared
        return response

    def get(self, url, **kwargs):
        kwargs.setdefault("allow_redirects", True)
        return self.request("GET", url, **kwargs)

    def options(self, url, **kwargs):
        kwargs.setdefault("allow_redirects", True)
        return self.request("OPTIONS", url, **kwargs)

    def head(self, url, **kwargs):
        kwargs.setdefault("allow_redirects", False)
        return self.request("HEAD", url, **kwargs)

    def post(self, url, data=None, json=None, **kwargs):
        return self.request("POST", url, data=data, json=json, **kwargs)

    def put(self, url, data=None, **kwargs):
        return self.request("PUT", url, data=data, **kwargs)

    def patch(self, url, data=None, **kwargs):
        return self.request("PATCH", url, data=data, **kwargs)

    def delete(self, url, **kwargs):
        return self.request("DELETE", url, **kwargs)


_auth = auth


def session():
    """A new Session."""
    return Session()


def request(method, url, **kwargs):
    """One request with a throwaway Session."""
    with Session() as s:
        return s.request(method=method, url=url, **kwargs)


def get(url, params=None, **kwargs):
    return request("GET", url, params=params, **kwargs)


def options(url, **kwargs):
    return request("OPTIONS", url, **kwargs)


def head(url, **kwargs):
    kwargs.setdefault("allow_redirects", False)
    return request("HEAD", url, **kwargs)


def post(url, data=None, json=None, **kwargs):
    return request("POST", url, data=data, json=json, **kwargs)


def put(url, data=None, **kwargs):
    return request("PUT", url, data=data, **kwargs)


def patch(url, data=None, **kwargs):
    return request("PATCH", url, data=data, **kwargs)


def delete(url, **kwargs):
    return request("DELETE", url, **kwargs)

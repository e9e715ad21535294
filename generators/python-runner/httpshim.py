"""Outbound HTTP for `.py` generators, over wasi:http.

There are no sockets in the sandbox: `urllib.request` and the `requests` shim (the
`requests` package next to this file) both send through `send`, which hands each request
to the host. The host refuses any host not in the generator manifest's `[http] allow`
list, bounds the response, and cuts every wait at the run's deadline; `send` also never
waits past the run's own budget (`script.time-left`), so a stalled server ends the run
as a `TimeoutError` in the generator's frames rather than at the host's hard limit.
"""

import http
import http.client
import io
import urllib.error
import urllib.parse
import urllib.request
import urllib.response

from componentize_py_types import Err
from wit_world.imports import monotonic_clock, outgoing_handler, poll, script, streams
from wit_world.imports import wasi_http_types as wasi

# Set by the runner: called with the limit's description when the run's budget is spent
# while waiting; it raises (the runner's Stop) and does not return.
on_budget_spent = None

# Bytes per write to a request body stream (wasi:io's blocking-write-and-flush takes at
# most 4096).
WRITE_CHUNK = 4096
READ_CHUNK = 64 * 1024

# Headers wasi:http keeps for the host to set (wasmtime-wasi-http's forbidden list):
# urllib adds `Host` and `Connection` to every request, requests sends `Connection`;
# they are dropped here (the host sets the authority itself), where handing them over
# would refuse the whole request.
HOST_SET_HEADERS = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "proxy-connection", "transfer-encoding", "upgrade", "host", "http2-settings",
})  # fmt: skip


class TransportError(OSError):
    """The request did not get an answer. `kind` is "denied" (not in the allow list),
    "timeout", "connect" or "protocol"."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


_METHODS = {
    "GET": wasi.Method_Get,
    "HEAD": wasi.Method_Head,
    "POST": wasi.Method_Post,
    "PUT": wasi.Method_Put,
    "DELETE": wasi.Method_Delete,
    "CONNECT": wasi.Method_Connect,
    "OPTIONS": wasi.Method_Options,
    "TRACE": wasi.Method_Trace,
    "PATCH": wasi.Method_Patch,
}

_TIMEOUTS = (
    wasi.ErrorCode_DnsTimeout,
    wasi.ErrorCode_ConnectionTimeout,
    wasi.ErrorCode_ConnectionReadTimeout,
    wasi.ErrorCode_ConnectionWriteTimeout,
    wasi.ErrorCode_HttpResponseTimeout,
)
_CONNECT = (
    wasi.ErrorCode_DnsError,
    wasi.ErrorCode_DestinationNotFound,
    wasi.ErrorCode_DestinationUnavailable,
    wasi.ErrorCode_DestinationIpProhibited,
    wasi.ErrorCode_DestinationIpUnroutable,
    wasi.ErrorCode_ConnectionRefused,
    wasi.ErrorCode_ConnectionTerminated,
    wasi.ErrorCode_ConnectionLimitReached,
    wasi.ErrorCode_TlsProtocolError,
    wasi.ErrorCode_TlsCertificateError,
    wasi.ErrorCode_TlsAlertReceived,
)


def _error(code, url):
    name = type(code).__name__.removeprefix("ErrorCode_")
    if isinstance(code, wasi.ErrorCode_HttpRequestDenied):
        host = urllib.parse.urlsplit(url).netloc
        return TransportError(
            "denied",
            f"{url}: denied by httpsd: {host} is not in the [http] allow list of the "
            "generator's manifest",
        )
    detail = getattr(code, "value", None)
    if detail is not None and not isinstance(detail, (str, int)):
        detail = None
    message = f"{url}: {name}" + (f" ({detail})" if detail not in (None, "") else "")
    if isinstance(code, _TIMEOUTS):
        return TransportError("timeout", message)
    if isinstance(code, _CONNECT):
        return TransportError("connect", message)
    return TransportError("protocol", message)


def _budget_ns(timeout):
    """Nanoseconds a wait may take: the caller's timeout, never past the run's budget."""
    left = script.time_left()
    if timeout is None:
        return left, False
    asked = max(int(timeout * 1e9), 0)
    return (asked, True) if asked < left else (left, False)


def _wait(pollable, timeout, url):
    """Blocks until `pollable` is ready; a timeout of the caller is a TransportError, the
    run's budget running out stops the run."""
    wait, is_callers = _budget_ns(timeout)
    with monotonic_clock.subscribe_duration(wait) as timer:
        ready = poll.poll([pollable, timer])
    if 0 in ready:
        return
    if is_callers:
        raise TransportError("timeout", f"{url}: no answer within {timeout} s")
    if on_budget_spent is not None:
        on_budget_spent(script.should_stop() or "wall clock")
    raise TransportError("timeout", f"{url}: the run's time is up")


def _write_body(request_body, data, timeout, url):
    with request_body.write() as out:
        view = memoryview(data)
        for at in range(0, len(view), WRITE_CHUNK):
            try:
                out.blocking_write_and_flush(bytes(view[at : at + WRITE_CHUNK]))
            except Err as e:
                raise TransportError("protocol", f"{url}: sending the body: {e.value!r}")
    wasi.OutgoingBody.finish(request_body, None)


def _read_body(response, timeout, url):
    body = response.consume()
    chunks = []
    with body.stream() as stream:
        while True:
            try:
                chunk = stream.read(READ_CHUNK)
            except Err as e:
                if isinstance(e.value, streams.StreamError_Closed):
                    break
                raise TransportError("protocol", f"{url}: reading the body: {e.value!r}")
            if chunk:
                chunks.append(chunk)
                continue
            with stream.subscribe() as ready:
                _wait(ready, timeout, url)
    wasi.IncomingBody.finish(body)
    return b"".join(chunks)


def send(method, url, headers=(), data=None, timeout=None):
    """One request: returns (status, [(name, value)], body bytes). `headers` are
    (name, str) pairs; `timeout` in seconds bounds the wait for the answer and for each
    read of its body."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise TransportError("protocol", f"{url}: only http and https URLs are supported")
    if not parts.hostname:
        raise TransportError("protocol", f"{url}: no host")
    fields = []
    for name, value in headers:
        name = str(name).lower()
        if name in HOST_SET_HEADERS:
            continue
        raw = value if isinstance(value, bytes) else str(value).encode("latin-1")
        fields.append((name, raw))
    try:
        request = wasi.OutgoingRequest(wasi.Fields.from_list(fields))
    except Err as e:
        raise ValueError(f"invalid HTTP header: {e.value!r}") from None
    verb = _METHODS.get(method.upper())
    request.set_method(verb() if verb else wasi.Method_Other(method.upper()))
    request.set_scheme(wasi.Scheme_Https() if parts.scheme == "https" else wasi.Scheme_Http())
    request.set_authority(parts.netloc.rpartition("@")[2])
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    request.set_path_with_query(target)
    request_body = request.body() if data else None
    try:
        pending = outgoing_handler.handle(request, None)
    except Err as e:
        raise _error(e.value, url) from None
    if request_body is not None:
        _write_body(request_body, data, timeout, url)
    with pending:
        with pending.subscribe() as ready:
            _wait(ready, timeout, url)
        answer = pending.get()
    if answer is None or isinstance(answer, Err):
        raise TransportError("protocol", f"{url}: no response")
    if isinstance(answer.value, Err):
        raise _error(answer.value.value, url)
    response = answer.value.value
    with response:
        status = response.status()
        with response.headers() as fields:
            header_list = [(k, v.decode("latin-1")) for k, v in fields.entries()]
        payload = b"" if method.upper() == "HEAD" else _read_body(response, timeout, url)
    return status, header_list, payload


def reason(status):
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


# ---------------------------------------------------------------------------------------
# urllib.request


def _http_open(self, req):
    """`urllib.request`'s HTTP(S) handler, over `send`."""
    headers = dict(req.unredirected_hdrs)
    headers.update(req.headers)
    data = req.data
    if data is not None and not isinstance(data, (bytes, bytearray)):
        data = data.read() if hasattr(data, "read") else b"".join(data)
    timeout = req.timeout if isinstance(req.timeout, (int, float)) else None
    try:
        status, header_list, payload = send(
            req.get_method(), req.full_url, headers.items(), data, timeout
        )
    except TransportError as e:
        if e.kind == "denied":
            raise urllib.error.URLError(str(e)) from None
        if e.kind == "timeout":
            raise urllib.error.URLError(TimeoutError(str(e))) from None
        raise urllib.error.URLError(str(e)) from None
    message = http.client.HTTPMessage()
    for name, value in header_list:
        message[name] = value
    response = urllib.response.addinfourl(io.BytesIO(payload), message, req.full_url, status)
    response.msg = reason(status)
    response.reason = response.msg
    return response


# Every opener (`urlopen`'s and `build_opener()`'s) handles http and https with it.
urllib.request.HTTPHandler.http_open = _http_open
urllib.request.HTTPHandler.https_open = _http_open
urllib.request.HTTPHandler.https_request = urllib.request.AbstractHTTPHandler.do_request_
urllib.request.install_opener(None)

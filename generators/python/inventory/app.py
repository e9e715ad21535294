"""Example: the inventory generator in Python (componentize-py).

Asks an inventory API for its hosts (`GET <url>/hosts`, a JSON list) and turns them
into target groups: one group per (exporter, dc, role, labels), `job` = the exporter.
The same output as the Rust example in generators/inventory, so either can replace
the other.

Build (see docs/PYTHON.md):

    scripts/wit-http wit-http
    componentize-py -d wit-http -w generator-http componentize app -o inventory.wasm

Manifest (inventory.toml next to inventory.wasm):

    [config]
    url = "http://inventory.internal:8080"
    [http]
    allow = ["inventory.internal:8080"]
    [secrets]
    token = { env = "INVENTORY_TOKEN" }   # optional: sent as a bearer token

Query parameters: ?dc=... and ?role=... filter (each may repeat), ?exporter=... keeps
one exporter.
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import config, log, outgoing_handler, streams
from wit_world.imports import wasi_http_types as http
from wit_world.imports.httpsd_generator_types import Error, TargetGroup


def fail(message):
    """Ends the run with a GeneratorError carrying `message`."""
    raise Err(Error(message=message))


def http_get(url, headers, max_bytes=16 << 20):
    """A blocking GET over wasi:http; returns (status, body bytes)."""
    scheme, _, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    request = http.OutgoingRequest(http.Fields.from_list(headers))
    request.set_method(http.Method_Get())
    request.set_scheme(http.Scheme_Https() if scheme == "https" else http.Scheme_Http())
    request.set_authority(authority)
    request.set_path_with_query(slash + path if slash else "/")
    try:
        pending = outgoing_handler.handle(request, None)
    except Err as e:
        fail(f"GET {url}: {e.value!r}")
    pending.subscribe().block()
    answer = pending.get()
    if answer is None or isinstance(answer, Err) or isinstance(answer.value, Err):
        code = answer.value.value if answer is not None and not isinstance(answer, Err) else None
        if isinstance(code, http.ErrorCode_HttpRequestDenied):
            fail(f"GET {url}: denied by httpsd: the host is not in the [http] allow list")
        fail(f"GET {url}: {code!r}")
    response = answer.value.value
    body = response.consume()
    stream = body.stream()
    chunks, total = [], 0
    while True:
        try:
            chunk = stream.blocking_read(64 * 1024)
        except Err as e:
            if isinstance(e.value, streams.StreamError_Closed):
                break
            fail(f"GET {url}: reading the body: {e.value.value.to_debug_string()}")
        total += len(chunk)
        if total > max_bytes:
            fail(f"GET {url}: body over {max_bytes} bytes")
        chunks.append(chunk)
    stream.__exit__(None, None, None)  # the stream goes before its body is finished
    http.IncomingBody.finish(body)
    return response.status(), b"".join(chunks)


class WitWorld(wit_world.WitWorld):
    def generate(self, params):
        base = config.get("url")
        if not base:
            fail("missing config value `url` in the manifest")
        headers = [("accept", b"application/json")]
        token = config.secret("token")
        if token is not None:
            headers.append(("authorization", f"Bearer {token}".encode()))
        url = base.rstrip("/") + "/hosts"
        status, body = http_get(url, headers)
        if not 200 <= status < 300:
            fail(f"{url} answered {status}: {body[:200].decode(errors='replace')}")
        hosts = json.loads(body)
        log.log(log.Level.INFO, f"inventory {base}: {len(hosts)} hosts")

        def wanted(key, value):
            values = [v for k, v in params if k == key]
            return not values or value in values

        exporter_filter = next((v for k, v in params if k == "exporter"), None)
        groups = {}
        for host in hosts:
            dc, role = host.get("dc", ""), host.get("role", "")
            if not wanted("dc", dc) or not wanted("role", role):
                continue
            if not host.get("address"):
                fail(f"inventory host {host.get('name')!r} has no address")
            extra = tuple(sorted(host.get("labels", {}).items()))
            for exporter, port in sorted(host.get("exporters", {}).items()):
                if exporter_filter is not None and exporter != exporter_filter:
                    continue
                key = (exporter, dc, role, extra)
                groups.setdefault(key, []).append(f"{host['address']}:{port}")

        out = []
        for (job, dc, role, extra), targets in sorted(groups.items()):
            labels = [("job", job)]
            if dc:
                labels.append(("dc", dc))
            if role:
                labels.append(("role", role))
            labels.extend(extra)
            out.append(TargetGroup(targets=sorted(targets), labels=labels))
        return out

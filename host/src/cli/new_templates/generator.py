"""A target generator for httpsd, written by `httpsd new NAME --lang python`.

It is a prometheus-http-sd style generator: drop this file (and its manifest) into the
target tree and httpsd runs it in its sandbox, no build step. Prometheus asks
`/targets/<path>?env=prod`; httpsd calls generate_targets(env="prod") and serves the
list of target groups it returns. `httpsd check DIR` runs test_generate_targets().

What it may use: the standard library, `yaml`, `requests` and `urllib.request` (to the
hosts the manifest's [http] allow lists), `logging` and `print` (both land in
`?debug=true` and `httpsd check -v`), and `httpsd.config(...)` / `httpsd.secret(...)`
for the manifest's [config] and [secrets]. No files, no environment, no sockets.
See docs/PYTHON.md.
"""

import logging

import httpsd

log = logging.getLogger(__name__)


def generate_targets(**params):
    """The query parameters arrive as strings, the first value of a repeated key."""
    env = params.get("env", "prod")
    site = httpsd.config("site", "dc1")
    port = httpsd.config("port", "9100")
    hosts = [f"node{i}.{site}.example.com:{port}" for i in range(1, 4)]
    log.info("%d hosts for env=%s", len(hosts), env)
    # With [http] allow = ["inventory.internal:8080"] in the manifest:
    #   import requests
    #   hosts = requests.get("http://inventory.internal:8080/hosts", timeout=5).json()
    return [
        {
            "targets": hosts,
            "labels": {"job": "node", "env": env, "site": site},
        }
    ]


def test_generate_targets():
    """What `httpsd check` runs: the generator with test parameters, checked."""
    groups = generate_targets(env="test")
    assert groups and groups[0]["targets"], "no targets"
    return groups

"""A prometheus-http-sd generator, copied over as it was: httpsd runs it unchanged.

/targets/python answers it (and /targets, the union of every generator, includes it);
?dc=ams1 picks the data centre (the first value of a repeated key, as 3.x did).
"""

import ipaddress
import logging

log = logging.getLogger(__name__)

SUBNETS = {"fra1": "10.9.1.0/29", "ams1": "10.8.1.0/29"}


def generate_targets(**kwargs):
    dc = kwargs.get("dc", "fra1")
    if dc not in SUBNETS:
        raise ValueError(f"unknown dc {dc!r}; known: {', '.join(sorted(SUBNETS))}")
    hosts = list(ipaddress.ip_network(SUBNETS[dc]).hosts())[:3]
    log.info("%d exporters in %s", len(hosts), dc)
    return [
        {"targets": [f"{ip}:9100" for ip in hosts], "labels": {"job": "node", "dc": dc}},
        {"targets": [f"{ip}:9256" for ip in hosts], "labels": {"job": "process", "dc": dc}},
    ]


def test_generate_targets():
    return generate_targets(dc="ams1")

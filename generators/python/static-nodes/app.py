"""The static-nodes example in Python: a fixed node-exporter fleet, as code.

The runtime benchmark (scripts/bench languages) measures instantiate+call with it:
no I/O, so what it shows is the cost of starting the Python interpreter's snapshot
and calling into it. Build:

    componentize-py -d ../../../wit -w generator componentize app -o static_nodes_py.wasm
"""

import wit_world
from wit_world.imports.types import TargetGroup

# (datacenter, rack, hosts)
FLEET = [
    ("fra1", "r01", ["10.1.1.11", "10.1.1.12", "10.1.1.13"]),
    ("fra1", "r02", ["10.1.2.11", "10.1.2.12"]),
    ("ams2", "r01", ["10.2.1.11", "10.2.1.12", "10.2.1.13", "10.2.1.14"]),
]


class WitWorld(wit_world.WitWorld):
    def generate(self, params):
        return [
            TargetGroup(
                targets=[f"{host}:9100" for host in hosts],
                labels=[("job", "node"), ("dc", dc), ("rack", rack)],
            )
            for dc, rack, hosts in FLEET
        ]

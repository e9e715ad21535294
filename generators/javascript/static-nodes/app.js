// The static-nodes example in JavaScript: a fixed node-exporter fleet, as code.
//
// The runtime benchmark (scripts/bench languages) measures instantiate+call with it:
// no I/O, so what it shows is the cost of starting the JavaScript engine's snapshot
// and calling into it. Build (without fetch, it needs no wasi:http):
//
//     componentize-js --wit ../../../wit -n generator -d http fetch-event -o static_nodes_js.wasm app.js

// [datacenter, rack, hosts]
const FLEET = [
  ['fra1', 'r01', ['10.1.1.11', '10.1.1.12', '10.1.1.13']],
  ['fra1', 'r02', ['10.1.2.11', '10.1.2.12']],
  ['ams2', 'r01', ['10.2.1.11', '10.2.1.12', '10.2.1.13', '10.2.1.14']],
];

export function generate(params) {
  return FLEET.map(([dc, rack, hosts]) => ({
    targets: hosts.map((host) => `${host}:9100`),
    labels: [['job', 'node'], ['dc', dc], ['rack', rack]],
  }));
}

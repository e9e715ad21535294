// Example: the inventory generator in JavaScript (componentize-js).
//
// Asks an inventory API for its hosts (`GET <url>/hosts`, a JSON list) and turns them
// into target groups: one group per (exporter, dc, role, labels), `job` = the
// exporter. The same output as the Rust example in generators/inventory.
//
// Build (see docs/JAVASCRIPT.md):
//
//     componentize-js --wit wit -n generator -o inventory.wasm app.js
//
// `fetch` goes out through wasi:http: httpsd lets it reach only the hosts in the
// manifest's [http] allow list (inventory.toml next to inventory.wasm):
//
//     [config]
//     url = "http://inventory.internal:8080"
//     [http]
//     allow = ["inventory.internal:8080"]
//     [secrets]
//     token = { env = "INVENTORY_TOKEN" }   # optional: sent as a bearer token
//
// Query parameters: ?dc=... and ?role=... filter (each may repeat), ?exporter=...
// keeps one exporter.

import { log } from 'httpsd:generator/log@0.1.0';
import { get as configGet, secret } from 'httpsd:generator/config@0.1.0';

// Throwing `{ message }` ends the run with a GeneratorError carrying the message.
function fail(message) {
  throw { message };
}

// Code-point order, as Rust and Python compare strings (not localeCompare).
function compare(a, b) {
  if (Array.isArray(a)) {
    for (let i = 0; i < Math.min(a.length, b.length); i++) {
      const c = compare(a[i], b[i]);
      if (c !== 0) return c;
    }
    return a.length - b.length;
  }
  return a < b ? -1 : a > b ? 1 : 0;
}

// componentize-js runs the event loop until the returned promise settles.
export async function generate(params) {
  const base = configGet('url') ?? fail('missing config value `url` in the manifest');
  const headers = { accept: 'application/json' };
  const token = secret('token');
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  const url = `${base.replace(/\/+$/, '')}/hosts`;
  let response;
  try {
    response = await fetch(url, { headers });
  } catch (e) {
    // fetch reports every network failure the same way; httpsd's run log (and the
    // HttpDeniedError it reports for a refused host) says which one it was.
    fail(`GET ${url}: ${e}`);
  }
  const body = await response.text();
  if (!response.ok) fail(`${url} answered ${response.status}: ${body.slice(0, 200)}`);
  const hosts = JSON.parse(body);
  log('info', `inventory ${base}: ${hosts.length} hosts`);

  const wanted = (key, value) => {
    const values = params.filter(([k]) => k === key).map(([, v]) => v);
    return values.length === 0 || values.includes(value);
  };
  const exporterFilter = params.find(([k]) => k === 'exporter')?.[1];
  const groups = new Map();
  for (const host of hosts) {
    const dc = host.dc ?? '';
    const role = host.role ?? '';
    if (!wanted('dc', dc) || !wanted('role', role)) continue;
    if (!host.address) fail(`inventory host ${JSON.stringify(host.name)} has no address`);
    const extra = Object.entries(host.labels ?? {}).sort(compare);
    for (const [exporter, port] of Object.entries(host.exporters ?? {}).sort(compare)) {
      if (exporterFilter !== undefined && exporter !== exporterFilter) continue;
      const key = JSON.stringify([exporter, dc, role, extra]);
      if (!groups.has(key)) groups.set(key, { sortKey: [exporter, dc, role, extra], targets: [] });
      groups.get(key).targets.push(`${host.address}:${port}`);
    }
  }
  return [...groups.values()]
    .sort((a, b) => compare(a.sortKey, b.sortKey))
    .map(({ sortKey: [job, dc, role, extra], targets }) => {
      const labels = [['job', job]];
      if (dc) labels.push(['dc', dc]);
      if (role) labels.push(['role', role]);
      labels.push(...extra);
      return { targets: targets.sort(compare), labels };
    });
}

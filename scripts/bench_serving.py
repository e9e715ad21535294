#!/usr/bin/env python3
"""Serving benchmarks, run by scripts/bench: prints a Markdown block on stdout.

1. Cache hits at 50 connections (wrk, 10 s): `httpsd server` answering a cached path
   next to the one-GET axum baseline (host/examples/one_get_baseline.rs), both on the
   same Redis, interleaved, in the same run.
2. Worker jobs/s: N jobs for a trivial generator pushed straight into Redis
   (redis-cli --pipe), timed until every one is processed.

Everything runs on loopback, on free ports, with a redis-server of its own.
usage: bench_serving.py <release-bin-dir> <components-dir>
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

BIN, COMPONENTS = sys.argv[1], sys.argv[2]
WRK_SECONDS = int(os.environ.get("BENCH_WRK_SECONDS", "10"))
JOBS = int(os.environ.get("BENCH_JOBS", "20000"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_http(url, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{url} did not answer")


def http_status(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


procs = []


def start(args, **kw):
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    procs.append(p)
    return p


def redis_cli(port, *args):
    return subprocess.run(
        ["redis-cli", "-p", str(port), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def wrk(url):
    out = subprocess.run(
        ["wrk", "-t2", "-c50", f"-d{WRK_SECONDS}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise SystemExit(f"{url}: {non2xx.group(1)} non-2xx answers during the benchmark")
    return rps, lat.get("50", "?"), lat.get("99", "?")


def main():
    work = tempfile.mkdtemp(prefix="httpsd-bench-")
    tree = os.path.join(work, "targets")
    os.makedirs(os.path.join(tree, "nodes"))
    shutil.copy(os.path.join(COMPONENTS, "static_nodes.wasm"), os.path.join(tree, "nodes/static-nodes.wasm"))
    env = dict(os.environ, HTTPSD_CACHE_DIR=os.path.join(work, "cache"), HTTPSD_LOG_LEVEL="warn")

    rport = free_port()
    start(["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
    deadline = time.time() + 10
    while True:
        try:
            if redis_cli(rport, "PING") == "PONG":
                break
        except subprocess.CalledProcessError:
            pass
        if time.time() > deadline:
            raise SystemExit("redis-server did not start")
        time.sleep(0.05)
    redis_url = f"redis://127.0.0.1:{rport}/0"

    # --- worker jobs/s -------------------------------------------------------------
    mport = free_port()
    worker = start([f"{BIN}/httpsd", "worker", tree, "--redis-url", redis_url, "--metrics-port", str(mport)], env=env)
    wait_http(f"http://127.0.0.1:{mport}/healthz")

    def processed():
        text = urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics").read().decode()
        return sum(float(v) for v in re.findall(r"^httpsd_redis_worker_jobs_processed_total\{[^}]*\} (\S+)", text, re.M))

    def payload(n, tag):
        lines = []
        for i in range(n):
            fp = f"/targets/nodes?{tag}={i}"
            job = json.dumps({"full_path": fp, "path": "nodes", "extra_args": {tag: str(i)}, "job_id": f"{fp}:0"})
            args = ["LPUSH", "target_generation_queue", job]
            lines.append("*%d\r\n" % len(args) + "".join("$%d\r\n%s\r\n" % (len(a.encode()), a) for a in args))
        return "".join(lines)

    def push(data):
        subprocess.run(["redis-cli", "-p", str(rport), "--pipe"], input=data, text=True,
                       capture_output=True, check=True)

    def drain(target, timeout=300):
        deadline = time.time() + timeout
        while processed() < target:
            if time.time() > deadline:
                raise SystemExit("the worker did not finish the jobs")
            time.sleep(0.01)

    push(payload(2000, "warm"))  # compiles the component, warms the pools
    drain(2000)
    job_runs = []
    for round_ in range(3):
        # Built before the clock starts: only the push itself is timed.
        data = payload(JOBS, f"job{round_}")
        base = processed()
        t0 = time.time()
        push(data)
        drain(base + JOBS)
        job_runs.append(JOBS / (time.time() - t0))
        written = int(redis_cli(rport, "EVAL", f"return #redis.call('KEYS', '/targets/nodes?job{round_}=*')", "0"))
        if written != JOBS:
            raise SystemExit(f"expected {JOBS} cache entries, found {written}")
    job_runs.sort()

    # --- cache hits ----------------------------------------------------------------
    sport = free_port()
    bport = free_port()
    start([f"{BIN}/httpsd", "server", tree, "--redis-url", redis_url, "--port", str(sport),
           "--cache-seconds", "3600"], env=env)
    wait_http(f"http://127.0.0.1:{sport}/healthz")
    url = f"http://127.0.0.1:{sport}/targets/nodes"
    deadline = time.time() + 60
    while http_status(url) != 200:
        if time.time() > deadline:
            raise SystemExit("no cache hit to measure")
        time.sleep(0.05)
    # The worker filled the entry; it leaves before the measurement.
    worker.terminate()
    worker.wait(timeout=30)
    start([f"{BIN}/examples/one_get_baseline", redis_url, str(bport), "/targets/nodes?"])
    wait_http(f"http://127.0.0.1:{bport}/")

    rounds = {"baseline": [], "httpsd": []}
    for _ in range(3):
        rounds["baseline"].append(wrk(f"http://127.0.0.1:{bport}/"))
        rounds["httpsd"].append(wrk(url))
    median = {name: sorted(r)[1] for name, r in rounds.items()}
    ratios = sorted(h[0] / b[0] for h, b in zip(rounds["httpsd"], rounds["baseline"]))

    print(f"| cache hit, 50 connections, {WRK_SECONDS} s (wrk -t2 -c50) | req/s (median of 3) | p50 | p99 | all rounds |")
    print("|---|---|---|---|---|")
    for name, label in [("baseline", "one-GET axum baseline"), ("httpsd", "`httpsd server`, default flags")]:
        rps, p50, p99 = median[name]
        every = ", ".join(f"{r[0]:,.0f}" for r in rounds[name])
        print(f"| {label} | {rps:,.0f} | {p50} | {p99} | {every} |")
    print()
    print(f"httpsd / baseline: **{median['httpsd'][0] / median['baseline'][0]:.2f}×** of the medians; "
          f"per interleaved round {', '.join(f'{r:.2f}' for r in ratios)} (target ≥ 0.9×).")
    print()
    print(f"Worker: **{job_runs[1]:,.0f} jobs/s** (median of 3 rounds: "
          f"{', '.join(f'{r:,.0f}' for r in job_runs)}) — {JOBS:,} jobs for `static-nodes` pushed "
          f"straight into Redis per round, one `httpsd worker` with its defaults (4 workers, batch 8, 3 × 8 job slots each), "
          f"timed from the first push until every result was written (target ≥ 10,000 jobs/s).")


try:
    main()
finally:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()

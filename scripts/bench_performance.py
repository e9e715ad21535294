#!/usr/bin/env python3
"""The performance comparison of issue 7, run by `scripts/bench performance`: prints
docs/PERFORMANCE.md on stdout.

In one run, on loopback, with a redis-server of its own:
- cache hits (wrk) at 1, 50 and 500 connections, for a small answer (10 groups) and a
  large one (10,000 groups), for `httpsd server`, the one-GET axum baseline
  (host/examples/one_get_baseline.rs) and prometheus-http-sd 3.0.6 (PyPI, in a
  throwaway venv), all three reading the same Redis keys;
- worker jobs/s for the same trivial work (a static file of 10 groups) with
  `httpsd worker` and prometheus-http-sd's worker, and httpsd with a WebAssembly
  generator; httpsd scaled from 1 to 4 worker processes;
- memory (RSS) of `httpsd server` and `httpsd worker` after 10,000 paths were
  generated and served;
- the sandbox runtime's own figures (instantiate+call, cold vs warm start), from
  `cargo bench --bench runtime`, passed in as a file.

usage: bench_performance.py <release-bin-dir> <components-dir> <runtime-results-file>
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

BIN, COMPONENTS, RUNTIME_RESULTS = sys.argv[1], sys.argv[2], sys.argv[3]
WRK_SECONDS = int(os.environ.get("BENCH_WRK_SECONDS", "5"))
JOBS = int(os.environ.get("BENCH_JOBS", "20000"))
PY_JOBS = int(os.environ.get("BENCH_PY_JOBS", "3000"))
PATHS = int(os.environ.get("BENCH_PATHS", "10000"))
PHSD = "prometheus-http-sd==3.0.6"

procs = []


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start(args, **kw):
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    procs.append(p)
    return p


def stop(p):
    p.terminate()
    try:
        p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()


def status_of(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def wait_until(what, check, timeout=120):
    deadline = time.time() + timeout
    while not check():
        if time.time() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        kb = int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1))
    return kb / 1024


class Redis:
    def __init__(self):
        self.port = free_port()
        start(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--maxclients", "10000"])
        wait_until("redis-server", lambda: self.cli_ok("PING") == "PONG", 10)
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def cli_ok(self, *args):
        try:
            return self.cli(*args)
        except subprocess.CalledProcessError:
            return None

    def cli(self, *args):
        return subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True,
                              text=True, check=True).stdout.strip()

    def count(self, pattern):
        return int(self.cli("EVAL", f"return #redis.call('KEYS', '{pattern}')", "0"))

    def push_jobs(self, path, tag, n, params=True):
        """Jobs in the wire format an old server writes, built before the clock starts.
        Without params, every job is for `/targets/<path>?` (distinct job ids)."""
        lines = []
        for i in range(n):
            if params:
                fp = f"/targets/{path}?{tag}={i}"
                job = json.dumps({"full_path": fp, "path": path, "extra_args": {tag: str(i)}, "job_id": f"{fp}:0"})
            else:
                fp = f"/targets/{path}?"
                job = json.dumps({"full_path": fp, "path": path, "extra_args": {}, "job_id": f"{fp}:{tag}-{i}"})
            args = ["LPUSH", "target_generation_queue", job]
            lines.append("*%d\r\n" % len(args) + "".join("$%d\r\n%s\r\n" % (len(a.encode()), a) for a in args))
        data = "".join(lines)
        t0 = time.time()
        subprocess.run(["redis-cli", "-p", str(self.port), "--pipe"], input=data, text=True,
                       capture_output=True, check=True)
        return t0


def wrk(url, conns):
    threads = min(2, conns)
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{conns}", f"-d{WRK_SECONDS}s", "--timeout", "10s",
                          "--latency", url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    bad = non2xx.group(1) if non2xx else "0"
    return {"rps": rps, "p50": lat.get("50", "?"), "p99": lat.get("99", "?"), "non2xx": int(bad),
            "errors": errors.group(1) if errors else ""}


def static_file(groups):
    return json.dumps([{"targets": [f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}:9100"],
                        "labels": {"job": "node", "rack": f"r{i % 40:02d}", "dc": "fra1"}}
                       for i in range(groups)])


def main():
    work = tempfile.mkdtemp(prefix="httpsd-perf-")
    tree = os.path.join(work, "targets")
    for name, groups in [("small", 10), ("large", 10000), ("trivial", 10)]:
        os.makedirs(os.path.join(tree, name))
        with open(os.path.join(tree, name, "groups.json"), "w") as f:
            f.write(static_file(groups))
    os.makedirs(os.path.join(tree, "wasm"))
    shutil.copy(os.path.join(COMPONENTS, "static_nodes.wasm"), os.path.join(tree, "wasm/static-nodes.wasm"))
    # prometheus-http-sd's own kind of generator, for its worker: a Python file.
    os.makedirs(os.path.join(tree, "python"))
    with open(os.path.join(tree, "python", "gen.py"), "w") as f:
        f.write("def generate_targets(**kwargs):\n    return %s\n" % static_file(10))
    env = dict(os.environ, HTTPSD_CACHE_DIR=os.path.join(work, "cache"), HTTPSD_LOG_LEVEL="warn")

    # prometheus-http-sd in a throwaway venv.
    venv = os.path.join(work, "venv")
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    subprocess.run([f"{venv}/bin/pip", "install", "-q", PHSD], check=True, capture_output=True)

    redis = Redis()
    out = []

    # --- fill the cache entries every server reads ---------------------------------
    mport = free_port()
    worker = start([f"{BIN}/httpsd", "worker", tree, "--redis-url", redis.url, "--metrics-port", str(mport)], env=env)
    wait_until("the worker", lambda: status_of(f"http://127.0.0.1:{mport}/healthz") == 200)
    sport = free_port()
    server = start([f"{BIN}/httpsd", "server", tree, "--redis-url", redis.url, "--port", str(sport),
                    "--cache-seconds", "86400", "--refresh-ahead", "0"], env=env)
    for name in ["small", "large"]:
        url = f"http://127.0.0.1:{sport}/targets/{name}"
        wait_until(f"a cached {name} answer", lambda: status_of(url) == 200)
    sizes = {name: len(redis.cli("GET", f"/targets/{name}?")) for name in ["small", "large"]}

    # --- worker jobs/s ---------------------------------------------------------------
    metrics_ports = [mport]

    def processed():
        # The workers' own counters: polling Redis with KEYS over a growing keyspace
        # would cost Redis more than the jobs do.
        total = 0.0
        for port in metrics_ports:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
            total += sum(float(v) for v in re.findall(
                r"^httpsd_redis_worker_jobs_processed_total\{[^}]*\} (\S+)", text, re.M))
        return total

    def httpsd_round(path, tag, n):
        data_base = processed()
        t0 = redis.push_jobs(path, tag, n)
        deadline = time.time() + 600
        while processed() < data_base + n:
            if time.time() > deadline:
                raise SystemExit(f"timed out waiting for {n} httpsd jobs")
            time.sleep(0.01)
        rate = n / (time.time() - t0)
        written = redis.count(f"/targets/{path}?{tag}=*")
        if written != n:
            raise SystemExit(f"expected {n} entries for {path}?{tag}, found {written}")
        return rate

    httpsd_round("trivial", "warm", 2000)
    httpsd_round("wasm", "warm", 2000)
    jobs = {"httpsd, static file": [], "httpsd, wasm": []}
    for r in range(3):
        jobs["httpsd, static file"].append(httpsd_round("trivial", f"j{r}", JOBS))
        jobs["httpsd, wasm"].append(httpsd_round("wasm", f"j{r}", JOBS))
    stop(worker)

    # Scaling: 1 to 4 worker processes, the wasm generator.
    scaling = []
    for n in range(1, 5):
        ports = [free_port() for _ in range(n)]
        ws = [start([f"{BIN}/httpsd", "worker", tree, "--redis-url", redis.url, "--metrics-port", str(p)], env=env)
              for p in ports]
        for p in ports:
            wait_until("a worker", lambda: status_of(f"http://127.0.0.1:{p}/healthz") == 200)
        metrics_ports[:] = ports
        httpsd_round("wasm", f"s{n}w", 1000)
        scaling.append((n, httpsd_round("wasm", f"s{n}", JOBS)))
        for w in ws:
            stop(w)

    # prometheus-http-sd's worker pool (4 threads, its default).
    pport = free_port()
    pyworker = start([f"{venv}/bin/prometheus-http-sd-worker", "--redis-url", redis.url, "--port", str(pport),
                      "--log-level", "40", tree])
    time.sleep(2)

    def py_round(path, tag, n):
        t0 = redis.push_jobs(path, tag, n)
        wait_until(f"{n} prometheus-http-sd jobs", lambda: redis.count(f"/targets/{path}?{tag}=*") >= n, 900)
        return n / (time.time() - t0)

    def py_static_round(tag, n):
        # prometheus-http-sd fails static files given parameters (a TypeError), so these
        # jobs have none; they all write /targets/trivial?, and the round ends when the
        # queue and the processing list are empty.
        redis.cli("DEL", "/targets/trivial?")
        t0 = redis.push_jobs("trivial", tag, n, params=False)
        wait_until(f"{n} prometheus-http-sd jobs", lambda: redis.cli("LLEN", "target_generation_queue") == "0"
                   and redis.cli("LLEN", "target_generation_queue:processing") == "0", 900)
        rate = n / (time.time() - t0)
        if redis.cli("EXISTS", "/targets/trivial?") != "1" or redis.count("error:/targets/trivial?*") != 0:
            raise SystemExit("prometheus-http-sd did not write the static file's answer")
        return rate

    py_round("python", "pwarm", 200)
    py_static_round("pswarm", 200)
    jobs["prometheus-http-sd, static file"] = [py_static_round(f"ps{r}", PY_JOBS) for r in range(3)]
    jobs["prometheus-http-sd, Python generator"] = [py_round("python", f"p{r}", PY_JOBS) for r in range(3)]
    stop(pyworker)
    median = {k: sorted(v)[1] for k, v in jobs.items()}

    # --- cache hits --------------------------------------------------------------------
    servers = {"httpsd": sport}
    # The same server without its local cache: every hit is a Redis round trip.
    nport = free_port()
    start([f"{BIN}/httpsd", "server", tree, "--redis-url", redis.url, "--port", str(nport),
           "--cache-seconds", "86400", "--refresh-ahead", "0", "--local-cache", "0"], env=env)
    servers["httpsd-nolocal"] = nport
    for name in ["small", "large"]:
        port = free_port()
        start([f"{BIN}/examples/one_get_baseline", redis.url, str(port), f"/targets/{name}?"])
        servers[f"baseline-{name}"] = port
    pyport = free_port()
    start([f"{venv}/bin/prometheus-http-sd-server", "--redis-url", redis.url, "--port", str(pyport),
           "--cache-seconds", "86400", "--log-level", "40", tree])
    servers["prometheus-http-sd"] = pyport
    for port in servers.values():
        wait_until("a server", lambda: status_of(f"http://127.0.0.1:{port}/targets/small") in (200, 503, 404))
    hits = {}
    rounds_of = {}
    for name in ["small", "large"]:
        for conns in [1, 50, 500]:
            urls = {
                "baseline": f"http://127.0.0.1:{servers['baseline-' + name]}/",
                "httpsd-nolocal": f"http://127.0.0.1:{nport}/targets/{name}",
                "httpsd": f"http://127.0.0.1:{sport}/targets/{name}",
                "prometheus-http-sd": f"http://127.0.0.1:{pyport}/targets/{name}",
            }
            for tool, url in urls.items():
                if status_of(url) != 200:
                    raise SystemExit(f"{tool}: {url} does not answer 200")
            # The targets' cell (small answer, 50 connections) gets 3 interleaved rounds
            # and its medians; the machine's speed drifts between rounds.
            rounds = 3 if (name, conns) == ("small", 50) else 1
            for _ in range(rounds):
                for tool, url in urls.items():
                    if rounds > 1 and tool == "prometheus-http-sd" and (name, conns, tool) in hits:
                        continue
                    hits.setdefault((name, conns, tool), []).append(wrk(url, conns))
    for key, runs in list(hits.items()):
        if len(runs) > 1:
            rounds_of[key] = [r["rps"] for r in runs]
        hits[key] = sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]

    # --- memory at PATHS cached paths -----------------------------------------------------
    worker = start([f"{BIN}/httpsd", "worker", tree, "--redis-url", redis.url, "--metrics-port", str(free_port())],
                   env=env)
    t0 = redis.push_jobs("wasm", "mem", PATHS)
    wait_until("the memory round", lambda: redis.count("/targets/wasm?mem=*") >= PATHS, 600)
    # Every path asked for once through the server (its URL memo and index fill up).
    for i in range(PATHS):
        if status_of(f"http://127.0.0.1:{sport}/targets/wasm?mem={i}") != 200:
            raise SystemExit(f"path {i} of the memory round was not served")
    rss = {"httpsd server": rss_mib(server.pid), "httpsd worker": rss_mib(worker.pid)}
    stop(worker)

    # --- the page -----------------------------------------------------------------------
    machine = f"{os.cpu_count()} cores, {os.uname().machine}, {time.strftime('%Y-%m-%d', time.gmtime())}"
    p = out.append
    p("# Performance\n")
    p("httpsd next to the tool it replaces (prometheus-http-sd 3.0.6, from PyPI) and next to the")
    p("smallest Rust server that answers from Redis at all (one axum handler doing one `GET`,")
    p("[`host/examples/one_get_baseline.rs`](../host/examples/one_get_baseline.rs)). Every figure")
    p("below comes from one run of `./scripts/bench performance`")
    p("([`scripts/bench_performance.py`](../scripts/bench_performance.py)), which writes this")
    p("page; ratios are between figures of that same run. Everything shares the machine's")
    p(f"cores on loopback: the load generator (wrk), Redis and the server under test.\n")
    p(f"Measured on {machine}.\n")

    p("## Cache hits\n")
    p(f"`wrk` for {WRK_SECONDS} s per cell against a cached path. All servers read the same")
    p(f"Redis key: small is 10 groups ({sizes['small']:,} bytes), large is 10,000 groups")
    p(f"({sizes['large']:,} bytes). httpsd runs with its defaults (`--cache-seconds` raised so the")
    p("entry stays fresh), once as it is (hot answers kept in the process for `--local-cache`,")
    p("1 s) and once with `--local-cache 0` (one Redis `GET` per request, like the baseline);")
    p("prometheus-http-sd with its defaults (waitress, 64 threads).\n")
    tools = [("baseline", "one-GET baseline"), ("httpsd-nolocal", "httpsd, `--local-cache 0`"),
             ("httpsd", "httpsd, defaults (local cache)"), ("prometheus-http-sd", "prometheus-http-sd")]
    p("Requests per second:\n")
    p("| answer | connections | " + " | ".join(label for _, label in tools)
      + " | httpsd `--local-cache 0` / baseline | httpsd / baseline | httpsd / prometheus-http-sd |")
    p("|---|---|" + "---|" * (len(tools) + 3))
    for name in ["small", "large"]:
        for conns in [1, 50, 500]:
            r = {t: hits[(name, conns, t)]["rps"] for t, _ in tools}
            vs_py = f"{r['httpsd'] / r['prometheus-http-sd']:,.0f}×" if r["prometheus-http-sd"] > 0 else "∞"
            p(f"| {name} | {conns} | " + " | ".join(f"{r[t]:,.0f}" if r[t] >= 100 else f"{r[t]:,.1f}" for t, _ in tools)
              + f" | {r['httpsd-nolocal'] / r['baseline']:.2f}× | {r['httpsd'] / r['baseline']:.2f}× | {vs_py} |")
    b_rounds = rounds_of[("small", 50, "baseline")]
    for tool, label in tools[1:3]:
        ratios = ", ".join(f"{h / b:.2f}" for h, b in zip(rounds_of[("small", 50, tool)], b_rounds))
        p(f"\nSmall answer, 50 connections, {label} / baseline per interleaved round: {ratios} "
          "(the table shows medians of the 3).")
    p("\nLatency, p50 / p99 (wrk's, per cell):\n")
    p("| answer | connections | " + " | ".join(label for _, label in tools) + " |")
    p("|---|---|" + "---|" * len(tools))
    for name in ["small", "large"]:
        for conns in [1, 50, 500]:
            cells = [hits[(name, conns, t)] for t, _ in tools]
            p(f"| {name} | {conns} | " + " | ".join(f"{c['p50']} / {c['p99']}" for c in cells) + " |")
    notes = [f"{t} {n}/{c}: {r['non2xx']} non-2xx, socket errors {r['errors']}"
             for (n, c, t), r in hits.items() if r["non2xx"] or r["errors"]]
    if notes:
        p("\nNot every answer was a 200 or every connection clean: " + "; ".join(notes) + ".")
    p("")

    p("## Worker throughput\n")
    p(f"Jobs pushed straight into `target_generation_queue` in the wire format (httpsd: {JOBS:,} per")
    p(f"round; prometheus-http-sd: {PY_JOBS:,}), timed from the push until every result is in Redis;")
    p("median of 3 rounds after a warm-up. One worker process each, with its defaults (httpsd:")
    p("4 loops; prometheus-http-sd: 4 threads). The static file is the same 10-group JSON")
    p("file for both; the generators return the same 10 groups (httpsd: the `static-nodes`")
    p("component, 3 groups of 9 targets; prometheus-http-sd: a Python function).\n")
    p("| worker, work | jobs/s (median) | rounds | vs prometheus-http-sd, static file |")
    p("|---|---|---|---|")
    base = median["prometheus-http-sd, static file"]
    for k in jobs:
        p(f"| {k} | {median[k]:,.0f} | {', '.join(f'{r:,.0f}' for r in jobs[k])} | {median[k] / base:.1f}× |")
    p("")
    p("Scaling, `httpsd worker` processes on one Redis (the wasm generator, one round each):\n")
    p("| processes | jobs/s | vs 1 process |")
    p("|---|---|---|")
    for n, rate in scaling:
        p(f"| {n} | {rate:,.0f} | {rate / scaling[0][1]:.2f}× |")
    p("")
    p(f"## Memory\n")
    p(f"RSS after {PATHS:,} distinct paths (one parameter each, the wasm generator) were generated by")
    p("one worker and each served once by the server:\n")
    p("| process | RSS |")
    p("|---|---|")
    for k, v in rss.items():
        p(f"| {k} | {v:,.0f} MiB |")
    p("")
    p("## Sandbox runtime\n")
    p("`cargo bench --bench runtime` in the same run (details in [BENCHMARKS.md](BENCHMARKS.md)):\n")
    with open(RUNTIME_RESULTS) as f:
        p(f.read().strip())
    print("\n".join(out))


try:
    main()
finally:
    for proc in procs:
        proc.terminate()

#!/usr/bin/env python3
"""The performance comparison of issue 7, run by `scripts/bench performance`: prints
docs/PERFORMANCE.md on stdout and writes the cost-curve plot next to it.

In one run, on loopback, with a redis-server of its own:
- cache hits (wrk) at 1, 50 and 500 connections, for a small answer (10 groups) and a
  large one (10,000 groups), for `httpsd server` with and without its local cache, the
  one-GET axum baseline (host/examples/one_get_baseline.rs) and prometheus-http-sd
  3.0.6 (PyPI, in a throwaway venv), all reading the same Redis keys; 3 interleaved
  rounds per cell, and each server's CPU time per answer;
- worker jobs/s for the same trivial work (a static file of 10 groups) with
  `httpsd worker` and prometheus-http-sd's worker, and httpsd with each example
  generator; scaling from 1 to 4 worker processes; a worker's cold and warm start;
- the cost curve: how throughput and memory grow with answer size, number of paths,
  generators per path and worker processes (tables, and an SVG plot);
- the sandbox runtime's own figures (instantiate+call, compile cold vs warm), from
  `cargo bench --bench runtime`, passed in as a file.

usage: bench_performance.py <release-bin-dir> <components-dir> <runtime-results-file>
                            <plot.svg> [<python-and-javascript-components-dir>]
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import svgplot  # noqa: E402
from benchlib import (Redis, cpu_seconds, free_port, median, rss_mib, start, status_of,  # noqa: E402
                      stop, stop_all, wait_until, wrk)

BIN, COMPONENTS, RUNTIME_RESULTS, PLOT = sys.argv[1:5]
LANGUAGES = sys.argv[5] if len(sys.argv) > 5 else ""
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WRK_SECONDS = int(os.environ.get("BENCH_WRK_SECONDS", "5"))
# Worker rounds are sized from a warm-up to last about this long.
ROUND_SECONDS = float(os.environ.get("BENCH_ROUND_SECONDS", "3"))
PY_JOBS = int(os.environ.get("BENCH_PY_JOBS", "2000"))
# Comma-separated overrides make a quick trial run possible (BENCH_PATH_COUNTS=1000,10000).
PATH_COUNTS = [int(x) for x in os.environ.get("BENCH_PATH_COUNTS", "1000,10000,100000").split(",")]
ANSWER_SIZES = [int(x) for x in os.environ.get("BENCH_ANSWER_SIZES", "10,100,1000,10000,100000").split(",")]
GENERATOR_COUNTS = [1, 2, 4, 8, 16]
# bench-cpu iterations per job in the CPU-bound scaling run (about a millisecond).
CPU_N = 500000
PHSD = "prometheus-http-sd==3.0.6"
CORES = os.cpu_count() or 1


def static_file(groups):
    return json.dumps([{"targets": [f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}:9100"],
                        "labels": {"job": "node", "rack": f"r{i % 40:02d}", "dc": "fra1"}}
                       for i in range(groups)])


class Workers:
    """`httpsd worker` processes on one Redis, and the jobs they have processed, read
    from their own counters (polling Redis with KEYS over a growing keyspace would cost
    Redis more than the jobs do)."""

    def __init__(self, ctx, count=1, args=(), env=None, pin=False):
        """`pin`: process i runs on core i mod cores only (taskset), as on a machine or
        container of one core each; its runtime then starts one thread."""
        self.ctx = ctx
        self.ports = [free_port() for _ in range(count)]
        self.procs = [start((["taskset", "-c", str(i % CORES)] if pin else [])
                            + [f"{BIN}/httpsd", "worker", ctx.tree, "--redis-url", ctx.redis.url,
                               "--metrics-port", str(p), *args], env=env or ctx.env)
                      for i, p in enumerate(self.ports)]
        for p in self.ports:
            wait_until("a worker", lambda: status_of(f"http://127.0.0.1:{p}/healthz") == 200)

    def processed(self):
        total = 0.0
        for port in self.ports:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
            total += sum(float(v) for v in re.findall(
                r"^httpsd_redis_worker_jobs_processed_total\{[^}]*\} (\S+)", text, re.M))
        return total

    def round(self, path, tag, n, extra=None, first=0):
        """Jobs/s for `n` jobs for `path`, from the push until every one is processed;
        fails unless every job wrote its answer."""
        redis = self.ctx.redis
        base = self.processed()
        t0 = redis.push_jobs(path, tag, n, extra=extra, first=first)
        wait_until(f"{n} jobs for {path}", lambda: self.processed() >= base + n, 900, every=0.01)
        rate = n / (time.time() - t0)
        written = redis.count(f"/targets/{path}?*{tag}=*")
        if written < n:
            errors = redis.count(f"error:/targets/{path}?*{tag}=*")
            raise SystemExit(f"{path}: {n} jobs, {written} answers written ({errors} errors)")
        return rate

    def rate(self, path, tag, rounds=3, extra=None, warm=200, least=300):
        """`rounds` rounds, each sized from a warm-up to last about ROUND_SECONDS. The
        first warm-up pays for loading the generator (the Python runner: tens of MB), so
        the second one sizes the rounds."""
        self.round(path, f"{tag}v", warm, extra)
        estimate = self.round(path, f"{tag}w", warm, extra)
        n = int(min(20000, max(least, estimate * ROUND_SECONDS)))
        return [self.round(path, f"{tag}{r}", n, extra) for r in range(rounds)], n

    def stop(self):
        for p in self.procs:
            stop(p)


def py_run_times(redis, pattern, most=5000):
    """The generator's own run time (ms) in the run reports matching `pattern`."""
    script = ("local out = {} for i, k in ipairs(redis.call('KEYS', ARGV[1])) do "
              "if i > tonumber(ARGV[2]) then break end out[#out + 1] = redis.call('GET', k) end return out")
    times = []
    for raw in redis.cmd("EVAL", script, "0", pattern, str(most)) or []:
        try:
            report = json.loads(raw)
            times.extend(g["duration"] for g in report.get("generators", []) if "duration" in g)
        except (ValueError, TypeError, KeyError):
            continue
    if not times:
        raise SystemExit(f"no run reports under {pattern}")
    return sorted(times)


class Context:
    def __init__(self, work, redis, tree, env):
        self.work, self.redis, self.tree, self.env = work, redis, tree, env


def component(name):
    return os.path.join(COMPONENTS, f"{name}.wasm")


def build_tree(tree):
    """The target tree every measurement uses (each directory is one path)."""
    def put(rel, text=None, copy=None):
        dest = os.path.join(tree, rel)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if copy:
            shutil.copy(copy, dest)
        else:
            with open(dest, "w") as f:
                f.write(text)

    for name, groups in [("small", 10), ("large", 10000), ("trivial", 10)]:
        put(f"{name}/groups.json", static_file(groups))
    put("wasm/static-nodes.wasm", copy=component("static_nodes"))
    put("cpu/bench-cpu.wasm", copy=component("bench_cpu"))
    # prometheus-http-sd's own kind of generator, for its worker: a Python file.
    put("python/gen.py", "def generate_targets(**kwargs):\n    return %s\n" % static_file(10))
    # The examples, laid out as scripts/demo lays them out: generators/demo-targets, with
    # the components its `_components` file names copied in.
    demo = os.path.join(REPO, "generators/demo-targets")
    shutil.copytree(demo, os.path.join(tree, "demo"))
    examples = {}
    with open(os.path.join(demo, "_components")) as f:
        for rel, crate in (line.split() for line in f if line.strip() and not line.startswith("#")):
            put(f"demo/{rel}", copy=component(crate.replace("-", "_")))
            examples[f"{crate} (Rust)"] = f"demo/{os.path.dirname(rel)}"
    for d in sorted(os.listdir(demo)):
        if os.path.isdir(os.path.join(demo, d)) and f"demo/{d}" not in examples.values():
            drop_in = any(f.endswith(".py") for f in os.listdir(os.path.join(demo, d)))
            examples[f"{d} ({'.py, drop-in' if drop_in else 'static files'})"] = f"demo/{d}"
    for lang, file in [("Python", "static_nodes_py.wasm"), ("JavaScript", "static_nodes_js.wasm")]:
        built = os.path.join(LANGUAGES, file) if LANGUAGES else ""
        if built and os.path.exists(built):
            put(f"demo/{lang.lower()}-nodes/static-nodes.wasm", copy=built)
            examples[f"static-nodes ({lang})"] = f"demo/{lang.lower()}-nodes"
    for g in ANSWER_SIZES:
        put(f"size{g}/groups.json", static_file(g))
    for k in GENERATOR_COUNTS:
        for i in range(k):
            put(f"gens{k}/nodes-{i}.wasm", copy=component("static_nodes"))
    return examples


def main():
    work = tempfile.mkdtemp(prefix="httpsd-perf-")
    tree = os.path.join(work, "targets")
    examples = build_tree(tree)
    env = dict(os.environ, HTTPSD_CACHE_DIR=os.path.join(work, "cache"), HTTPSD_LOG_LEVEL="warn")

    venv = os.path.join(work, "venv")
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    subprocess.run([f"{venv}/bin/pip", "install", "-q", PHSD], check=True, capture_output=True)

    redis = Redis()
    ctx = Context(work, redis, tree, env)
    r = {}  # every figure, by name

    # --- the entries every server reads ----------------------------------------------
    workers = Workers(ctx)
    sport = free_port()
    server = start([f"{BIN}/httpsd", "server", tree, "--redis-url", redis.url, "--port", str(sport),
                    "--cache-seconds", "86400", "--refresh-ahead", "0"], env=env)
    for name in ["small", "large"]:
        url = f"http://127.0.0.1:{sport}/targets/{name}"
        wait_until(f"a cached {name} answer", lambda: status_of(url) == 200)
    r["sizes"] = {name: len(redis.cmd("GET", f"/targets/{name}?")) for name in ["small", "large"]}

    # --- worker jobs/s -------------------------------------------------------------------
    jobs = {}
    jobs["httpsd, static file (10 groups)"], _ = workers.rate("trivial", "j")
    jobs["httpsd, static-nodes (Rust)"], _ = workers.rate("wasm", "j")
    # The .py file prometheus-http-sd's worker runs below, run by httpsd as it is (the
    # Python runner), and each run's own time (instantiate + call + validate) from the
    # run reports the worker wrote.
    jobs["httpsd, the same .py generator (drop-in)"], _ = workers.rate("python", "y")
    r["py_run_ms"] = py_run_times(redis, "httpsd:run:/targets/python?y0=*")
    r["examples"] = {label: workers.rate(path, "e") for label, path in examples.items()}

    # --- cost: answer size and generators per path -----------------------------------------
    r["answer_size"] = []
    for g in ANSWER_SIZES:
        rates, n = workers.rate(f"size{g}", "c", rounds=1, warm=10, least=10)
        redis.delete(f"/targets/size{g}?*")
        url = f"http://127.0.0.1:{sport}/targets/size{g}"
        wait_until(f"a cached size{g} answer", lambda: status_of(url) == 200)
        cpu0 = cpu_seconds(server.pid)
        hit = wrk(url, 50, 3)
        cpu = (cpu_seconds(server.pid) - cpu0) / hit["requests"] * 1e6
        size = len(redis.cmd("GET", f"/targets/size{g}?"))
        r["answer_size"].append({"groups": g, "bytes": size, "jobs": rates[0], "hits": hit["rps"],
                                 "p50": hit["p50"], "cpu_us": cpu})
    r["generators"] = []
    for k in GENERATOR_COUNTS:
        rates, _ = workers.rate(f"gens{k}", "g", rounds=1, warm=100, least=100)
        r["generators"].append({"k": k, "jobs": rates[0]})
    workers.stop()

    # --- scaling: 1 to 4 worker processes ------------------------------------------------
    # Each process with its defaults on the trivial wasm generator: how far one Redis and
    # the cores take the whole system (one process already runs its jobs on every core).
    # Then each process held to one core (taskset) on a CPU-bound generator: whether
    # adding a process adds a core's worth of work, as adding a one-core machine would.
    r["scaling_default"], r["scaling_cpu"] = [], []
    for n in range(1, 5):
        ws = Workers(ctx, n)
        ws.round("wasm", f"s{n}w", 1000)
        r["scaling_default"].append((n, ws.round("wasm", f"s{n}", 20000)))
        ws.stop()
    cpu_jobs = None
    for n in range(1, 5):
        ws = Workers(ctx, n, pin=True)
        warm = ws.round("cpu", f"k{n}w", 50, extra={"n": CPU_N})
        cpu_jobs = cpu_jobs or int(max(200, warm * ROUND_SECONDS))
        r["scaling_cpu"].append((n, ws.round("cpu", f"k{n}", cpu_jobs * min(n, CORES), extra={"n": CPU_N})))
        ws.stop()

    # --- cold and warm start of a worker -------------------------------------------------
    # A job is queued, then a worker is started: the time until its answer is in Redis.
    # Cold: an empty artifact cache (the component is compiled); warm: the artifacts
    # the cold start wrote.
    start_env = dict(env, HTTPSD_CACHE_DIR=os.path.join(work, "start-cache"))
    r["start"] = []
    for kind in ["cold", "warm", "warm"]:
        tag = f"start{len(r['start'])}"
        redis.push_jobs("demo/nodes", tag, 1)
        t0 = time.time()
        p = start([f"{BIN}/httpsd", "worker", tree, "--redis-url", redis.url, "--metrics-port",
                   str(free_port())], env=start_env)
        wait_until("the first answer", lambda: redis.cmd("EXISTS", f"/targets/demo/nodes?{tag}=0") == 1,
                   60, every=0.002)
        r["start"].append((kind, time.time() - t0))
        stop(p)

    # --- prometheus-http-sd's worker pool (4 threads, its default) -------------------------
    pyworker = start([f"{venv}/bin/prometheus-http-sd-worker", "--redis-url", redis.url, "--port",
                      str(free_port()), "--log-level", "40", tree])
    time.sleep(2)

    def py_round(path, tag, n):
        t0 = redis.push_jobs(path, tag, n)
        wait_until(f"{n} prometheus-http-sd jobs", lambda: redis.count(f"/targets/{path}?{tag}=*") >= n, 900, 0.2)
        return n / (time.time() - t0)

    def py_static_round(tag, n):
        # prometheus-http-sd fails static files given parameters (a TypeError), so these
        # jobs have none; they all write /targets/trivial?, and the round ends when the
        # queue and the processing list are empty.
        redis.cmd("DEL", "/targets/trivial?")
        t0 = redis.push_jobs("trivial", tag, n, params=False)
        wait_until(f"{n} prometheus-http-sd jobs", lambda: redis.cmd("LLEN", "target_generation_queue") == 0
                   and redis.cmd("LLEN", "target_generation_queue:processing") == 0, 900, 0.05)
        rate = n / (time.time() - t0)
        if redis.cmd("EXISTS", "/targets/trivial?") != 1 or redis.count("error:/targets/trivial?*") != 0:
            raise SystemExit("prometheus-http-sd did not write the static file's answer")
        return rate

    py_round("python", "pwarm", 200)
    py_static_round("pswarm", 200)
    jobs["prometheus-http-sd, static file (10 groups)"] = [py_static_round(f"ps{i}", PY_JOBS) for i in range(3)]
    jobs["prometheus-http-sd, Python generator"] = [py_round("python", f"p{i}", PY_JOBS // 2) for i in range(3)]
    stop(pyworker)
    r["jobs"] = jobs

    # --- cache hits --------------------------------------------------------------------
    servers = {"httpsd": server}
    nport = free_port()
    servers["httpsd-nolocal"] = start([f"{BIN}/httpsd", "server", tree, "--redis-url", redis.url, "--port",
                                       str(nport), "--cache-seconds", "86400", "--refresh-ahead", "0",
                                       "--local-cache", "0"], env=env)
    bports, mports = {}, {}
    for name in ["small", "large"]:
        bports[name], mports[name] = free_port(), free_port()
        servers[f"baseline-{name}"] = start([f"{BIN}/examples/one_get_baseline", redis.url, str(bports[name]),
                                             f"/targets/{name}?"])
        # The same handler answering from memory: what any server on this machine
        # reaches once no Redis round trip is left.
        servers[f"memory-{name}"] = start([f"{BIN}/examples/one_get_baseline", redis.url, str(mports[name]),
                                           f"/targets/{name}?", "--memory"])
    pyport = free_port()
    servers["prometheus-http-sd"] = start([f"{venv}/bin/prometheus-http-sd-server", "--redis-url", redis.url,
                                           "--port", str(pyport), "--cache-seconds", "86400", "--log-level", "40",
                                           tree])
    for port in [nport, pyport, *bports.values(), *mports.values()]:
        wait_until("a server", lambda: status_of(f"http://127.0.0.1:{port}/targets/small") in (200, 503, 404))
    hits = {}
    for name in ["small", "large"]:
        for conns in [1, 50, 500]:
            urls = {
                "baseline": (f"http://127.0.0.1:{bports[name]}/", servers[f"baseline-{name}"]),
                "memory": (f"http://127.0.0.1:{mports[name]}/", servers[f"memory-{name}"]),
                "httpsd-nolocal": (f"http://127.0.0.1:{nport}/targets/{name}", servers["httpsd-nolocal"]),
                "httpsd": (f"http://127.0.0.1:{sport}/targets/{name}", server),
                "prometheus-http-sd": (f"http://127.0.0.1:{pyport}/targets/{name}", servers["prometheus-http-sd"]),
            }
            for tool, (url, _) in urls.items():
                if status_of(url) != 200:
                    raise SystemExit(f"{tool}: {url} does not answer 200")
            # Three interleaved rounds per cell (the machine's speed drifts between
            # rounds); prometheus-http-sd, orders of magnitude apart, gets one.
            for rnd in range(3):
                for tool, (url, proc) in urls.items():
                    if rnd > 0 and tool == "prometheus-http-sd":
                        continue
                    cpu0 = cpu_seconds(proc.pid)
                    run = wrk(url, conns, WRK_SECONDS)
                    run["cpu_us"] = (cpu_seconds(proc.pid) - cpu0) / max(1, run["requests"]) * 1e6
                    hits.setdefault((name, conns, tool), []).append(run)
    r["hits"] = hits
    for p in servers.values():
        if p is not server:
            stop(p)

    # --- cost: number of paths ----------------------------------------------------------
    # A fresh server and worker; the wasm generator answers PATH_COUNTS distinct paths
    # (one parameter each), generated by the worker and then each requested through the
    # server, round-robin, by wrk.
    stop(server)
    mport = free_port()
    server = start([f"{BIN}/httpsd", "server", tree, "--redis-url", redis.url, "--port", str(mport),
                    "--cache-seconds", "86400", "--refresh-ahead", "0"], env=env)
    workers = Workers(ctx)
    wait_until("the server", lambda: status_of(f"http://127.0.0.1:{mport}/readyz") == 200)
    script = os.path.join(work, "paths.lua")
    with open(script, "w") as f:
        f.write("local n = 0\n"
                "function setup(thread) thread:set('id', n); n = n + 1 end\n"
                "function init(args) paths = tonumber(args[1]); step = tonumber(args[2]); i = id end\n"
                "function request()\n"
                "  local p = i % paths; i = i + step\n"
                "  return wrk.format('GET', '/targets/wasm?p=' .. p)\n"
                "end\n")
    r["paths"] = []
    before = redis.used_memory()
    done, rate = 0, None
    for count in PATH_COUNTS:
        workers.round("wasm", "p", count - done, first=done)
        done = count
        # Long enough to touch every path at the last round's rate, with room: more
        # paths are slower per hit (a round once ran short at 100,000).
        seconds = 3 if rate is None else max(3, int(count / rate * 2.5) + 1)
        run = wrk(f"http://127.0.0.1:{mport}/", 4, seconds, script, (count, 2))
        if run["non2xx"] or run["requests"] < count:
            raise SystemExit(f"paths round {count}: {run['requests']} requests, {run['non2xx']} not 200")
        rate = run["rps"]
        r["paths"].append({"paths": count, "server": rss_mib(server.pid), "worker": rss_mib(workers.procs[0].pid),
                           "redis": (redis.used_memory() - before) / 2 ** 20, "hits": run["rps"]})
    workers.stop()
    stop(server)

    with open(RUNTIME_RESULTS) as f:
        r["runtime"] = f.read().strip()
    write_plot(r)
    print(render(r))


def ratio_cells(hits, name, conns, tool):
    """Per-round ratios of `tool` to the baseline in one cell."""
    return [a["rps"] / b["rps"] for a, b in zip(hits[(name, conns, tool)], hits[(name, conns, "baseline")])]


def med(runs, key="rps"):
    return median([x[key] for x in runs])


def mid_run(runs):
    """The run with the median req/s (its latency figures go with it)."""
    return sorted(runs, key=lambda x: x["rps"])[len(runs) // 2]


def write_plot(r):
    sizes = r["answer_size"]
    svgplot.write(PLOT, title="httpsd: the cost curve (one run of ./scripts/bench performance)", panels=[
        dict(title="Answer size", xlabel="groups in the answer", ylabel="per second", logx=True, logy=True,
             series=[("cache hits/s (50 connections)", [(s["groups"], s["hits"]) for s in sizes]),
                     ("worker jobs/s", [(s["groups"], s["jobs"]) for s in sizes])]),
        dict(title="Number of paths", xlabel="distinct cached paths", ylabel="MiB", logx=True, logy=True,
             series=[("server RSS", [(p["paths"], p["server"]) for p in r["paths"]]),
                     ("worker RSS", [(p["paths"], p["worker"]) for p in r["paths"]]),
                     ("Redis memory used by the entries", [(p["paths"], p["redis"]) for p in r["paths"]])]),
        dict(title="Generators per path", xlabel="generators under the path", ylabel="per second",
             logx=True, logy=True,
             series=[("jobs/s", [(g["k"], g["jobs"]) for g in r["generators"]]),
                     ("generator runs/s", [(g["k"], g["jobs"] * g["k"]) for g in r["generators"]])]),
        dict(title="Worker processes", xlabel="httpsd worker processes", ylabel="jobs/s (× 1 process)",
             series=[("one core each, CPU-bound", [(n, v / r["scaling_cpu"][0][1]) for n, v in r["scaling_cpu"]]),
                     ("defaults, trivial wasm", [(n, v / r["scaling_default"][0][1])
                                                 for n, v in r["scaling_default"]])]),
    ])


def render(r):
    out = []
    p = out.append
    hits, jobs = r["hits"], r["jobs"]
    machine = f"{CORES} cores, {os.uname().machine}, {time.strftime('%Y-%m-%d', time.gmtime())}"
    tools = [("baseline", "one-GET baseline"), ("memory", "in-memory ceiling"),
             ("httpsd-nolocal", "httpsd, `--local-cache 0`"), ("httpsd", "httpsd, defaults (local cache)"),
             ("prometheus-http-sd", "prometheus-http-sd")]
    rps = {k: med(v) for k, v in hits.items()}
    jm = {k: median(v) for k, v in jobs.items()}
    py_static = jm["prometheus-http-sd, static file (10 groups)"]
    inst = re.search(r"instantiate\+call[^|]*\|\s*([\d.]+) µs", r["runtime"])
    scaling_at_cores = dict(r["scaling_cpu"]).get(CORES, 0) / r["scaling_cpu"][0][1]

    p("# Performance\n")
    p("httpsd next to the tool it replaces (prometheus-http-sd 3.0.6, from PyPI) and next to the")
    p("smallest Rust server that answers from Redis at all (one axum handler doing one `GET`,")
    p("[`host/examples/one_get_baseline.rs`](../host/examples/one_get_baseline.rs)). Every figure")
    p("below comes from one run of `./scripts/bench performance`")
    p("([`scripts/bench_performance.py`](../scripts/bench_performance.py)), which writes this")
    p("page and [the plot](performance-cost.svg); ratios are between figures of that same run.")
    p("Everything shares the machine's cores on loopback: the load generator (wrk), Redis, the")
    p("workers and the server under test.\n")
    p(f"Measured on {machine}.\n")

    p("## Against the targets\n")
    p("| target | measured | met |")
    p("|---|---|---|")

    def row(target, measured, ok):
        p(f"| {target} | {measured} | {'yes' if ok else '**no**'} |")

    nl = rps[("small", 50, "httpsd-nolocal")] / rps[("small", 50, "baseline")]
    lc = rps[("small", 50, "httpsd")] / rps[("small", 50, "baseline")]
    row("cache hit without the local cache ≥ 0.9× the one-GET baseline (small, 50 connections)",
        f"{nl:.2f}× (rounds {', '.join(f'{x:.2f}' for x in ratio_cells(hits, 'small', 50, 'httpsd-nolocal'))})",
        nl >= 0.9)
    ceiling = rps[("small", 50, "memory")] / rps[("small", 50, "baseline")]
    row("cache hit with the local cache ≥ 1.5× the baseline (small, 50 connections)",
        f"{lc:.2f}× (rounds {', '.join(f'{x:.2f}' for x in ratio_cells(hits, 'small', 50, 'httpsd'))}); "
        f"the in-memory ceiling: {ceiling:.2f}×", lc >= 1.5)
    for name in ["small", "large"]:
        py = max(rps[(name, 50, "prometheus-http-sd")], 1e-9)
        v = rps[(name, 50, "httpsd")] / py
        row(f"≥ 500× prometheus-http-sd at 50 connections ({name} answer)",
            f"{v:,.0f}× (prometheus-http-sd: {py:,.0f} req/s; the in-memory ceiling: "
            f"{rps[(name, 50, 'memory')] / py:,.0f}×)", v >= 500)
    w = jm["httpsd, static file (10 groups)"] / py_static
    row("worker ≥ 10× prometheus-http-sd's jobs/s for the same trivial work", f"{w:.1f}×", w >= 10)
    row(f"worker scaling linear to the core count ({CORES} processes ≈ {CORES}× one)",
        f"{scaling_at_cores:.2f}× with {CORES} (one core each, CPU-bound generator)",
        scaling_at_cores >= 0.9 * CORES)
    if inst:
        row("instantiate+call p50 ≤ 50 µs", f"{inst.group(1)} µs", float(inst.group(1)) <= 50)
    py_times = r["py_run_ms"]
    py_p50 = py_times[len(py_times) // 2]
    row("a trivial drop-in .py generator: instantiate+call p50 ≤ 2 ms",
        f"{py_p50:.2f} ms (p99 {py_times[min(len(py_times) - 1, len(py_times) * 99 // 100)]:.2f} ms, "
        f"{len(py_times):,} runs of one worker round; most on a warm instance of their file, "
        f"see the Python runner table below)", py_p50 <= 2.0)
    py = jm["httpsd, the same .py generator (drop-in)"] / jm["prometheus-http-sd, Python generator"]
    row("the same .py: worker jobs/s ≥ 5× prometheus-http-sd's", f"{py:.1f}×", py >= 5)
    best = max((rps[("large", c, "httpsd")], c) for c in [1, 50, 500])
    row("a 10,000-group answer served at ≥ 5,000 req/s",
        f"{best[0]:,.0f} req/s ({best[1]} connection{'' if best[1] == 1 else 's'}); "
        f"the in-memory ceiling: {rps[('large', best[1], 'memory')]:,.0f}", best[0] >= 5000)
    share = {n: rps[(n, 50, "httpsd")] / rps[(n, 50, "memory")] for n in ["small", "large"]}
    p("\nThe *in-memory ceiling* is the one-GET baseline's handler answering from memory (it")
    p("reads the key once at start): the same HTTP stack with no work behind it at all, no")
    p("Redis round trip, no parsing, no metrics. It is what this machine allows, the kernel's")
    p("loopback and the load generator sharing the cores with the server; where a target asks")
    p("for more than the ceiling reaches here, no change to the server could meet it on this")
    p(f"machine. httpsd with its local cache reaches {share['small']:.0%} of the ceiling at 50")
    p(f"connections for the small answer and {share['large']:.0%} for the large one; the CPU table")
    p("below shows where the time goes.\n")

    p("## Cache hits\n")
    p(f"`wrk` for {WRK_SECONDS} s per run against a cached path, 3 interleaved rounds per cell (the")
    p("tables show medians; prometheus-http-sd, orders of magnitude apart, runs once). All")
    p(f"servers read the same Redis key: small is 10 groups ({r['sizes']['small']:,} bytes), large is")
    p(f"10,000 groups ({r['sizes']['large']:,} bytes). httpsd runs with its defaults (`--cache-seconds`")
    p("raised so the entry stays fresh), once as it is (hot answers kept in the process for")
    p("`--local-cache`, 1 s) and once with `--local-cache 0` (one Redis `GET` per request, like the")
    p("baseline); prometheus-http-sd with its defaults (waitress, 64 threads). The in-memory")
    p("ceiling is the baseline's handler answering from memory, as a reference.\n")
    p("Requests per second:\n")
    p("| answer | connections | " + " | ".join(label for _, label in tools)
      + " | httpsd `--local-cache 0` / baseline | httpsd / baseline | httpsd / prometheus-http-sd |")
    p("|---|---|" + "---|" * (len(tools) + 3))
    for name in ["small", "large"]:
        for conns in [1, 50, 500]:
            v = {t: rps[(name, conns, t)] for t, _ in tools}
            vs_py = f"{v['httpsd'] / v['prometheus-http-sd']:,.0f}×" if v["prometheus-http-sd"] > 0 else "∞"
            p(f"| {name} | {conns} | " + " | ".join(f"{v[t]:,.0f}" if v[t] >= 100 else f"{v[t]:,.1f}" for t, _ in tools)
              + f" | {v['httpsd-nolocal'] / v['baseline']:.2f}× | {v['httpsd'] / v['baseline']:.2f}× | {vs_py} |")
    p("\nEach round's ratio to the baseline (the rounds are interleaved, so each pair ran")
    p("back to back):\n")
    p("| answer | connections | in-memory ceiling / baseline | httpsd `--local-cache 0` / baseline | "
      "httpsd / baseline |")
    p("|---|---|---|---|---|")
    for name in ["small", "large"]:
        for conns in [1, 50, 500]:
            cells = [", ".join(f"{x:.2f}" for x in ratio_cells(hits, name, conns, t))
                     for t in ["memory", "httpsd-nolocal", "httpsd"]]
            p(f"| {name} | {conns} | " + " | ".join(cells) + " |")
    p("\nLatency, p50 / p99 (wrk's, of the median round):\n")
    p("| answer | connections | " + " | ".join(label for _, label in tools) + " |")
    p("|---|---|" + "---|" * len(tools))
    for name in ["small", "large"]:
        for conns in [1, 50, 500]:
            cells = [mid_run(hits[(name, conns, t)]) for t, _ in tools]
            p(f"| {name} | {conns} | " + " | ".join(f"{c['p50']} / {c['p99']}" for c in cells) + " |")
    p("\nCPU time of the server process per answer (µs, user + system, median of the rounds):")
    p("what the server itself spends, apart from wrk and Redis on the same cores (the kernel's")
    p("side of sending is counted here: for the large answer it is most of it, copying the")
    p("bytes into the socket). A million divided by it is what one core of that server")
    p("could answer per second.\n")
    p("| answer | connections | " + " | ".join(label for _, label in tools) + " |")
    p("|---|---|" + "---|" * len(tools))
    for name in ["small", "large"]:
        for conns in [1, 50, 500]:
            p(f"| {name} | {conns} | " + " | ".join(f"{med(hits[(name, conns, t)], 'cpu_us'):,.0f}"
                                                     for t, _ in tools) + " |")
    notes = [f"{t} {n}/{c}: {x['non2xx']} non-2xx, socket errors {x['errors']}"
             for (n, c, t), runs in hits.items() for x in runs if x["non2xx"] or x["errors"]]
    if notes:
        p("\nNot every answer was a 200 or every connection clean: " + "; ".join(notes) + ".")
    p("")

    p("## Worker throughput\n")
    p("Jobs pushed straight into `target_generation_queue` in the wire format, each for its own")
    p("path (a distinct parameter), timed from the push until every answer is in Redis; a")
    p(f"round is sized from a warm-up to last about {ROUND_SECONDS:g} s, and the table shows the")
    p("median of 3. One worker process each, with its defaults (httpsd: 4 loops;")
    p(f"prometheus-http-sd: 4 threads, {PY_JOBS:,} jobs per static-file round). The static file is the")
    p("same 10-group JSON file for both.\n")
    p("| worker, work | jobs/s (median) | rounds | vs prometheus-http-sd, static file |")
    p("|---|---|---|---|")
    for k in jobs:
        p(f"| {k} | {jm[k]:,.0f} | {', '.join(f'{x:,.0f}' for x in jobs[k])} | {jm[k] / py_static:.1f}× |")
    p("\nThe example generators (`generators/`, laid out as `scripts/demo` lays them out), one")
    p("`httpsd worker` with its defaults:\n")
    p("| generator | jobs/s (median) | rounds | jobs per round |")
    p("|---|---|---|---|")
    for label, (rates, n) in r["examples"].items():
        p(f"| {label} | {median(rates):,.0f} | {', '.join(f'{x:,.0f}' for x in rates)} | {n:,} |")
    if not any("Python" in k for k in r["examples"]):
        p("\n(The Python and JavaScript examples were not built: componentize-py or componentize-js")
        p("was not found. `./scripts/test` installs both.)")
    p("\nScaling, `httpsd worker` processes on one Redis:\n")
    p(f"| processes | one core each (taskset), bench-cpu (n={CPU_N:,}, about a millisecond of CPU a job) "
      "| vs 1 | defaults, static-nodes | vs 1 |")
    p("|---|---|---|---|---|")
    for (n, c), (_, d) in zip(r["scaling_cpu"], r["scaling_default"]):
        p(f"| {n} | {c:,.0f} | {c / r['scaling_cpu'][0][1]:.2f}× | {d:,.0f} | {d / r['scaling_default'][0][1]:.2f}× |")
    p("\nHeld to one core each (process i on core i mod the core count, as on machines or")
    p("containers of one core), a generator that spends its job on the CPU shows what each")
    p(f"process adds until the cores run out (this machine has {CORES}); past that, processes")
    p("share cores. With their defaults and a trivial generator the processes show the")
    p("whole system: one process already runs its jobs on every core (its runtime starts a")
    p("thread per core, and each of its 4 workers takes and runs up to 8 jobs at once), and Redis")
    p("shares the same cores, so more processes on one machine add nothing.\n")

    p("## Cold and warm start\n")
    p("A job for `static-nodes` is queued, then `httpsd worker` is started: time from the")
    p("process's start until the job's answer is in Redis. Cold: an empty artifact cache, so")
    p("the component is compiled; warm: the precompiled artifact the cold start wrote.\n")
    p("| start | first answer after |")
    p("|---|---|")
    for kind, secs in r["start"]:
        p(f"| {kind} | {secs * 1000:,.0f} ms |")
    p("")

    p("## The cost curve\n")
    p("How time and memory grow, each dimension alone; plotted in")
    p("[performance-cost.svg](performance-cost.svg):\n")
    p("![cost curve](performance-cost.svg)\n")
    p("**Answer size.** A static file of N groups (one target each); the worker's jobs/s")
    p("(one worker, defaults; each job a distinct path) and cache hits/s for that answer")
    p("(wrk, 50 connections, 3 s, httpsd with its defaults), with the server's CPU per answer:\n")
    p("| groups | answer bytes | worker jobs/s | cache hits/s | p50 | server CPU per answer |")
    p("|---|---|---|---|---|---|")
    for s in r["answer_size"]:
        p(f"| {s['groups']:,} | {s['bytes']:,} | {s['jobs']:,.0f} | {s['hits']:,.0f} | {s['p50']} | "
          f"{s['cpu_us']:,.0f} µs |")
    p("\n**Number of paths.** The `static-nodes` generator answering N distinct paths (one")
    p("parameter each), every one generated by one worker and then requested through a fresh")
    p("server, round-robin (wrk, 4 connections); memory after, and the hit rate over all N:\n")
    p("| paths | server RSS | worker RSS | Redis memory for the entries | hits/s, round-robin |")
    p("|---|---|---|---|---|")
    for x in r["paths"]:
        p(f"| {x['paths']:,} | {x['server']:,.0f} MiB | {x['worker']:,.0f} MiB | {x['redis']:,.1f} MiB | "
          f"{x['hits']:,.0f} |")
    p("\n**Generators per path.** N copies of `static-nodes` under one path; each job runs all N")
    p("and writes their union (one worker, defaults):\n")
    p("| generators | jobs/s | generator runs/s |")
    p("|---|---|---|")
    for g in r["generators"]:
        p(f"| {g['k']} | {g['jobs']:,.0f} | {g['jobs'] * g['k']:,.0f} |")
    p("\n**Worker processes.** The scaling table above.\n")

    p("## Sandbox runtime\n")
    p("`cargo bench --bench runtime` in the same run (details in [BENCHMARKS.md](BENCHMARKS.md)):\n")
    p(r["runtime"])
    return "\n".join(out)


try:
    main()
finally:
    stop_all()

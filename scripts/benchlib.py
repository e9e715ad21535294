"""What the benchmark scripts share: processes on free loopback ports, a small Redis
client, wrk, and jobs pushed straight into the queue in the wire format.

Standard library only, so `scripts/bench` needs nothing from PyPI (prometheus-http-sd,
the one thing it installs, goes into a throwaway venv).
"""

import json
import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request

procs = []


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start(args, **kw):
    """A background process, stopped by `stop_all` when the script ends."""
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    procs.append(p)
    return p


def stop(p):
    p.terminate()
    try:
        p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()


def stop_all():
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
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


def wait_until(what, check, timeout=120, every=0.05):
    deadline = time.time() + timeout
    while not check():
        if time.time() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(every)


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        kb = int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1))
    return kb / 1024


def cpu_seconds(pid):
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of stat; [0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def resp(*args):
    """One Redis command in the protocol's wire form."""
    parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


class Redis:
    """A redis-server of its own on a free port, and one connection to it (polling with
    a redis-cli process per check would cost more than what it measures)."""

    def __init__(self):
        self.port = free_port()
        start(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--maxclients", "10000"])
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.sock = None
        wait_until("redis-server", self._connect, 10)

    def _connect(self):
        try:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=60)
            self.buf = self.sock.makefile("rb")
            return self.cmd("PING") == "PONG"
        except OSError:
            return False

    def _reply(self):
        line = self.buf.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.buf.read(n + 2)[:-2]
            return data.decode(errors="replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise RuntimeError(f"unexpected reply {line!r}")

    def cmd(self, *args):
        self.sock.sendall(resp(*args))
        return self._reply()

    def count(self, pattern):
        """Keys matching `pattern` (a KEYS scan: fine for a check after a round, too slow
        to poll with)."""
        return self.cmd("EVAL", f"return #redis.call('KEYS', '{pattern}')", "0")

    def delete(self, pattern):
        """Deletes the keys matching `pattern` (between rounds, to keep Redis small)."""
        return self.cmd("EVAL", "local ks = redis.call('KEYS', ARGV[1]) "
                        "for _, k in ipairs(ks) do redis.call('DEL', k) end return #ks", "0", pattern)

    def used_memory(self):
        return int(re.search(r"used_memory:(\d+)", self.cmd("INFO", "memory")).group(1))

    def push_jobs(self, path, tag, n, params=True, extra=None, first=0):
        """`n` jobs for `/targets/<path>` in the wire format an old server writes, built
        before the clock starts; returns when the push began. Each job carries
        `<tag>=<i>` (distinct paths) plus `extra`; without params, every job is for
        `/targets/<path>?` (distinct job ids). `i` runs from `first`."""
        data = []
        for i in range(first, first + n):
            args = dict(extra or {})
            if params:
                args[tag] = str(i)
            query = "&".join(f"{k}={v}" for k, v in sorted(args.items()))
            fp = f"/targets/{path}?{query}"
            job_id = f"{fp}:0" if params else f"{fp}:{tag}-{i}"
            job = json.dumps({"full_path": fp, "path": path, "extra_args": args, "job_id": job_id})
            data.append(resp("LPUSH", "target_generation_queue", job))
        payload = b"".join(data)
        t0 = time.time()
        self.sock.sendall(payload)
        for _ in range(n):
            self._reply()
        return t0


def wrk(url, conns, seconds, script=None, script_args=()):
    """wrk's figures for one run: req/s, p50, p99, requests, non-2xx, socket errors."""
    threads = min(2, conns)
    args = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--timeout", "10s", "--latency"]
    if script:
        args += ["-s", script]
    args.append(url)
    if script_args:
        args += ["--", *map(str, script_args)]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50": lat.get("50", "?"), "p99": lat.get("99", "?"), "requests": requests,
            "non2xx": int(non2xx.group(1)) if non2xx else 0, "errors": errors.group(1) if errors else ""}


def median(values):
    s = sorted(values)
    return s[len(s) // 2]

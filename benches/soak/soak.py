"""The soak driver (benches/soak/run starts it; see benches/README.md).

Runs one Spillway (release binary) in front of two nginx origins and a
WebSocket echo origin for --duration seconds of mixed traffic:

  h1, h2c          h2load over plain TCP (HTTP/1.1, HTTP/2 prior knowledge)
  h1-tls, h2-tls   h2load over TLS (ALPN http/1.1, h2)
  ws, wss          WebSocket clients (python3-websockets), echo every 100 ms,
                   each connection closed and reopened every 30 s

while it reloads the config every --reload-every seconds (POST /reload; the
pool's response_timeout alternates so each reload is a new version) and kills
one nginx origin (SIGKILL, master and worker) every --kill-every seconds,
restarting it --down-for seconds later.

Measured: Spillway's RSS under load over the first and the last minute of
the run (mean of 1 s samples), its open file descriptors at rest (no
traffic, idle timeouts passed) before and after the run, requests per kind,
and errors by cause. h2load runs in rounds of a fixed count (10 s at the
rate), so every request it starts must finish. A round that overlaps a kill window
(from 1 s before the kill to 5 s after the restart) has its errors put down
to the kill; every other error, and any WebSocket error (the WebSocket
origin is never killed), is unexplained. Exit status 1 when RSS grew by
10 % or more, the descriptors did not come back to the baseline, an
unexplained error happened, a reload failed, a kind carried no traffic, or
Spillway died.
"""

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections import Counter

import websockets

ROUND_SECS = 10
WS_CLIENTS_PER_KIND = 4
WS_EVERY = 0.1
WS_RECONNECT_SECS = 30
IDLE_TIMEOUT_SECS = 3
MINUTE = 60
STARTED = []  # every process started, killed on exit


def log(msg):
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_timeout 65s;
    keepalive_requests 1000000;
    client_body_temp_path {dir}/tmp;
    proxy_temp_path {dir}/tmp;
    fastcgi_temp_path {dir}/tmp;
    uwsgi_temp_path {dir}/tmp;
    scgi_temp_path {dir}/tmp;
    server {{
        listen 127.0.0.1:{port};
        default_type text/plain;
        location / {{ return 200 "soak origin {name}: a small fixed body\\n"; }}
    }}
}}
"""

SPILLWAY_CONF = """
[admin]
listen = "127.0.0.1:{admin}"

[runtime]
drain_timeout = "5s"

[[listener]]
name = "plain"
listen = "127.0.0.1:{plain}"
idle_timeout = "{idle}s"

[[listener]]
name = "tls"
listen = "127.0.0.1:{tls}"
tls = {{ cert = "{cert}", key = "{key}" }}
idle_timeout = "{idle}s"

[pools.web]
endpoints = ["127.0.0.1:{a}", "127.0.0.1:{b}"]
connect_timeout = "300ms"
response_timeout = "{response_timeout}"
idle_timeout = "{idle}s"
health = {{ path = "/healthz", interval = "500ms", timeout = "300ms", unhealthy_after = 1, healthy_after = 2 }}

[pools.ws]
endpoints = ["127.0.0.1:{ws}"]
idle_timeout = "{idle}s"

[[route]]
name = "ws"
path_prefix = "/ws"
primary = "ws"

[[route]]
name = "web"
primary = "web"
"""


class Origin:
    """One nginx in its own process group, so a kill takes master and worker."""

    def __init__(self, work, name):
        self.dir = os.path.join(work, f"nginx-{name}")
        os.makedirs(os.path.join(self.dir, "tmp"), exist_ok=True)
        self.name, self.port, self.proc = name, free_port(), None
        with open(os.path.join(self.dir, "nginx.conf"), "w") as f:
            f.write(NGINX_CONF.format(dir=self.dir, port=self.port, name=name))

    def start(self):
        self.proc = subprocess.Popen(
            ["nginx", "-p", self.dir, "-c", os.path.join(self.dir, "nginx.conf")],
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.dir, "stderr.log"), "a"),
            start_new_session=True,
        )
        STARTED.append(self.proc)
        wait_http(f"http://127.0.0.1:{self.port}/healthz", f"nginx {self.name}")

    def kill(self):
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def wait_http(url, what, deadline_secs=20):
    deadline = time.time() + deadline_secs
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{what} not answering {url}")


class Spillway:
    def __init__(self, args, work, origins, ws_port):
        self.bin, self.work = args.spillway, work
        self.ports = dict(admin=free_port(), plain=free_port(), tls=free_port())
        self.values = dict(
            self.ports, a=origins[0].port, b=origins[1].port, ws=ws_port,
            cert=args.cert, key=args.key, idle=IDLE_TIMEOUT_SECS,
        )
        self.path = os.path.join(work, "spillway.toml")
        self.flip = False
        self.write()

    def write(self):
        timeout = "29s" if self.flip else "30s"
        with open(self.path + ".tmp", "w") as f:
            f.write(SPILLWAY_CONF.format(response_timeout=timeout, **self.values))
        os.replace(self.path + ".tmp", self.path)

    def start(self):
        self.proc = subprocess.Popen(
            [self.bin, "run", "--threads", "2", "--config", self.path],
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.work, "spillway.log"), "w"),
            env=dict(os.environ, RUST_LOG="warn", NO_COLOR="1"),
            start_new_session=True,
        )
        STARTED.append(self.proc)
        wait_http(self.admin("/readyz"), "spillway")

    def admin(self, path):
        return f"http://127.0.0.1:{self.ports['admin']}{path}"

    def alive(self):
        return self.proc.poll() is None

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def fds(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def fds_at_rest(self, samples=6):
        """The fewest descriptors over a few seconds (a health probe holds one briefly)."""
        seen = []
        for _ in range(samples):
            seen.append(self.fds())
            time.sleep(0.5)
        return min(seen)

    def reload(self):
        """Writes the other config and asks for a reload: (ok, detail)."""
        self.flip = not self.flip
        self.write()
        req = urllib.request.Request(
            self.admin("/reload"), data=b"{}", method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status == 200, json.loads(r.read()).get("version")
        except OSError as e:
            return False, str(e)

    def metrics(self):
        with urllib.request.urlopen(self.admin("/metrics"), timeout=5) as r:
            return r.read().decode()


class Tally:
    def __init__(self):
        self.requests = Counter()  # kind -> requests answered 2xx (ws: echoes)
        self.errors = Counter()  # (kind, cause, explained-by) -> count
        self.kill_windows = []  # (from, to)
        self.reloads = Counter()

    def explained(self, start, end):
        return any(start < to and end > frm for frm, to in self.kill_windows)


H2LOAD_KINDS = {
    "h1": ("plain", ["--h1"]),
    "h2c": ("plain", []),
    "h1-tls": ("tls", ["--h1"]),
    "h2-tls": ("tls", []),
}


def parse_h2load(text):
    reqs = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                     r"(\d+) failed, (\d+) errored, (\d+) timeout", text)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if not reqs or not codes:
        return None
    _, started, done, _, _, errored, timeout = map(int, reqs.groups())
    ok, c3, c4, c5 = map(int, codes.groups())
    causes = Counter({"5xx answer": c5, "3xx/4xx answer": c3 + c4, "transport error": errored,
                      "timeout": timeout, "not completed": max(0, started - done)})
    return ok, +causes


async def h2load_loop(kind, spillway, tally, stop_at, rps):
    listener, flags = H2LOAD_KINDS[kind]
    scheme = "https" if listener == "tls" else "http"
    url = f"{scheme}://127.0.0.1:{spillway.ports[listener]}/{kind}"
    while time.time() < stop_at:
        secs = max(1, min(ROUND_SECS, int(stop_at - time.time())))
        started = time.time()
        # A count, not a duration (-D): h2load's duration mode leaves the
        # requests in flight at its deadline "not done", which would hide a
        # hung request among them. Every request of a round must finish.
        count = 2 * rps * secs
        proc = await asyncio.create_subprocess_exec(
            "h2load", *flags, "-n", str(count), "-c", "2", "-m", "1", "--rps", str(rps), "-N", "10", url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), secs + 30)
        except asyncio.TimeoutError:
            proc.kill()
            out = b""
        parsed = parse_h2load(out.decode(errors="replace"))
        if parsed is None:
            parsed = (0, Counter({"h2load gave no result": 1}))
        ok, causes = parsed
        tally.requests[kind] += ok
        by = "kill" if tally.explained(started - 1, time.time()) else "unexplained"
        for cause, n in causes.items():
            tally.errors[(kind, cause, by)] += n


async def ws_client(kind, spillway, tally, stop_at, n):
    secure = kind == "wss"
    listener = "tls" if secure else "plain"
    url = f"{'wss' if secure else 'ws'}://127.0.0.1:{spillway.ports[listener]}/ws/{n}"
    ctx = None
    if secure:
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    seq = 0
    while time.time() < stop_at:
        try:
            async with websockets.connect(url, ssl=ctx, open_timeout=5, close_timeout=5) as ws:
                until = min(stop_at, time.time() + WS_RECONNECT_SECS)
                while time.time() < until:
                    seq += 1
                    msg = f"{kind}-{n}-{seq}"
                    await ws.send(msg)
                    got = await asyncio.wait_for(ws.recv(), 5)
                    if got != msg:
                        tally.errors[(kind, "wrong echo", "unexplained")] += 1
                    else:
                        tally.requests[kind] += 1
                    await asyncio.sleep(WS_EVERY)
        except asyncio.TimeoutError:
            tally.errors[(kind, "echo timeout", "unexplained")] += 1
        except websockets.exceptions.ConnectionClosed as e:
            tally.errors[(kind, f"closed ({e.code})", "unexplained")] += 1
        except (OSError, websockets.exceptions.InvalidHandshake) as e:
            tally.errors[(kind, f"connect: {type(e).__name__}", "unexplained")] += 1
            await asyncio.sleep(1)
        except Exception as e:  # noqa: BLE001 - every failure is counted, none ends the soak
            tally.errors[(kind, f"other: {type(e).__name__}", "unexplained")] += 1
            await asyncio.sleep(1)


ORIGIN_CLOSES = Counter()  # how the echo origin's connections ended


async def echo(ws, _path=None):
    try:
        async for msg in ws:
            await ws.send(msg)
        ORIGIN_CLOSES["clean"] += 1
    except websockets.exceptions.ConnectionClosed as e:
        ORIGIN_CLOSES[f"origin: {e}"] += 1


async def chaos(spillway, origins, tally, args, started, stop_at):
    """Reloads every --reload-every s; kills origin b every --kill-every s."""
    next_reload, next_kill = started + args.reload_every, started + args.kill_every
    loop = asyncio.get_running_loop()
    while True:
        upcoming = min(next_reload, next_kill)
        if upcoming >= stop_at - args.down_for:
            return  # no kill or reload the run would not see through
        await asyncio.sleep(max(0, upcoming - time.time()))
        if next_kill <= next_reload:
            victim = origins[1]
            killed = time.time()
            await loop.run_in_executor(None, victim.kill)
            log(f"killed nginx {victim.name}; restarting it in {args.down_for} s")
            tally.kill_windows.append((killed - 1, killed + args.down_for + 5 + 30))
            await asyncio.sleep(args.down_for)
            await loop.run_in_executor(None, victim.start)
            restarted = time.time()
            tally.kill_windows[-1] = (killed - 1, restarted + 5)
            log(f"nginx {victim.name} back after {restarted - killed:.1f} s")
            next_kill += args.kill_every
        else:
            ok, detail = await loop.run_in_executor(None, spillway.reload)
            tally.reloads["ok" if ok else "failed"] += 1
            if not ok:
                log(f"reload failed: {detail}")
            next_reload += args.reload_every


async def sample_rss(spillway, samples, stop_at):
    while time.time() < stop_at and spillway.alive():
        samples.append((time.time(), spillway.rss_kib()))
        await asyncio.sleep(1)


async def traffic(spillway, tally, secs, rps, chaos_task=None):
    stop_at = time.time() + secs
    tasks = [h2load_loop(k, spillway, tally, stop_at, rps) for k in H2LOAD_KINDS]
    for kind in ("ws", "wss"):
        tasks += [ws_client(kind, spillway, tally, stop_at, n) for n in range(WS_CLIENTS_PER_KIND)]
    if chaos_task is not None:
        tasks.append(chaos_task(stop_at))
    await asyncio.gather(*tasks)
    return stop_at


def metric_lines(text, name):
    return {line.split(" ")[0]: float(line.split(" ")[-1])
            for line in text.splitlines() if line.startswith(name + "{") or line.startswith(name + " ")}


async def main(args):
    work = args.work
    origins = [Origin(work, "a"), Origin(work, "b")]
    for o in origins:
        o.start()
    ws_port = free_port()
    ws_server = await websockets.serve(echo, "127.0.0.1", ws_port)
    spillway = Spillway(args, work, origins, ws_port)
    spillway.start()
    log(f"spillway pid {spillway.proc.pid}, admin {spillway.admin('/')}; warming up {args.warmup} s")
    warm = Tally()
    await traffic(spillway, warm, args.warmup, args.rps)
    await asyncio.sleep(2 * IDLE_TIMEOUT_SECS + 2)
    fds_start = spillway.fds_at_rest()
    log(f"at rest: {fds_start} fds; soaking for {args.duration} s")

    tally = Tally()
    ORIGIN_CLOSES.clear()
    rss = []
    started = time.time()
    end = started + args.duration
    sampler = asyncio.create_task(sample_rss(spillway, rss, end))
    await traffic(spillway, tally, args.duration, args.rps,
                  lambda stop_at: chaos(spillway, origins, tally, args, started, stop_at))
    await sampler
    metrics = spillway.metrics() if spillway.alive() else ""
    await asyncio.sleep(2 * IDLE_TIMEOUT_SECS + 2)
    alive = spillway.alive()
    fds_end = spillway.fds_at_rest() if alive else -1
    ws_server.close()
    for cause, n in ORIGIN_CLOSES.items():
        if cause != "clean":
            tally.errors[("ws origin", cause, "unexplained")] += n

    window = min(MINUTE, args.duration // 3)
    first = [kib for t, kib in rss if t < started + window]
    last = [kib for t, kib in rss if t >= end - window]
    rss_start = sum(first) / max(1, len(first))
    rss_end = sum(last) / max(1, len(last))
    growth = (rss_end - rss_start) / rss_start * 100 if rss_start else float("inf")
    return report(args, tally, metrics, alive, rss_start, rss_end, growth, fds_start, fds_end, window, spillway)


def report(args, tally, metrics, alive, rss_start, rss_end, growth, fds_start, fds_end, window, spillway):
    unexplained = sum(n for (_, _, by), n in tally.errors.items() if by == "unexplained")
    idle_kinds = [k for k in list(H2LOAD_KINDS) + ["ws", "wss"] if tally.requests[k] == 0]
    checks = [
        ("Spillway alive at the end", alive),
        (f"RSS growth < 10 % (mean of the first vs the last {window} s)", growth < 10),
        ("fds at rest back to the baseline", alive and fds_end <= fds_start),
        ("no unexplained error", unexplained == 0),
        ("every reload applied", tally.reloads["failed"] == 0 and tally.reloads["ok"] > 0),
        ("every kind carried traffic", not idle_kinds),
    ]
    out = [f"## Soak: {args.duration} s, reload every {args.reload_every} s, "
           f"endpoint killed every {args.kill_every} s for {args.down_for} s\n",
           "| measure | start | end |", "|---|---|---|",
           f"| RSS (KiB, mean over {window} s under load) | {rss_start:.0f} | {rss_end:.0f} ({growth:+.1f} %) |",
           f"| open fds (at rest) | {fds_start} | {fds_end} |",
           "", "| traffic | requests answered (ws: echoes) |", "|---|---|"]
    out += [f"| {k} | {tally.requests[k]} |" for k in list(H2LOAD_KINDS) + ["ws", "wss"]]
    out += [f"| reloads | {tally.reloads['ok']} applied, {tally.reloads['failed']} failed |",
            f"| endpoint kills | {len(tally.kill_windows)} |",
            "", "| errors: kind | cause | put down to | count |", "|---|---|---|---|"]
    if not tally.errors:
        out.append("| (none) | | | 0 |")
    out += [f"| {k} | {c} | {by} | {n} |" for (k, c, by), n in sorted(tally.errors.items())]
    out += ["", "| Spillway's own counters | value |", "|---|---|"]
    for name in ("spillway_proxy_errors_total", "spillway_retries_total", "spillway_endpoint_ejections_total",
                 "spillway_config_reloads_total", "config_reload_failures_total"):
        lines = metric_lines(metrics, name)
        out += [f"| `{series}` | {value:.0f} |" for series, value in sorted(lines.items())] or [f"| `{name}` | 0 |"]
    out += ["", "| requirement | result |", "|---|---|"]
    out += [f"| {what} | {'pass' if ok else 'FAIL'} |" for what, ok in checks]
    print("\n".join(out), flush=True)
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--spillway", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--duration", type=int, default=600)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--reload-every", type=int, default=30)
    p.add_argument("--kill-every", type=int, default=120)
    p.add_argument("--down-for", type=int, default=10)
    p.add_argument("--rps", type=int, default=50, help="requests per second per h2load client (2 per kind)")
    a = p.parse_args()
    code = 1
    try:
        code = asyncio.run(main(a))
    finally:
        for proc in STARTED:
            if proc.poll() is not None:
                continue  # already gone and reaped: its group id may be someone else's now
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
    sys.exit(code)

#!/usr/bin/env python3
"""The daemon's figures beside its peers', measured side by side (what `make bench-peers` runs).

The machine is shared and noisy, so the two sides are interleaved over several rounds (which side
goes first alternates) and each figure is reported as the median of the per-round ratios with their
spread, beside the medians of each side:

  ours  - `serendip bench --json` (the daemon rows of `serendip bench`, as JSON samples)
  peers - Bluesky's RunEngine (../shared/peers/bluesky_overhead.py, one child run per plan, documents
          kept in a list: "every reading stored") and bluesky-queueserver (../shared/peers/queue_api.py)

  python3 scripts/bench_peers.py --serendip .build/release/serendip --python .build/peers-venv/bin/python \
      --peers ../shared/peers --rounds 5

Standard library only.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


def run(cmd, **kw):
    started = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)
    return out.stdout, time.perf_counter() - started


def ours(a):
    """One round of our side: medians of each figure, in seconds (memory in MiB)."""
    out, took = run([a.serendip, "bench", "--json", "--count-steps", str(a.count_steps), "--scan-steps", str(a.scan_steps),
                     "--queued-runs", str(a.queued_runs), "--held-runs", str(a.held_runs)])
    f = json.loads(out.strip().splitlines()[-1])
    med = statistics.median
    return took, {
        "count": med(f["count_step_s"]), "scan": med(f["scan_step_s"]), "run": med(f["run_fixed_s"]),
        "add": med(f["queue_add_s"]), "queued": med(f["queued_run_s"]), "many": med(f["add_many_1000_s"]),
        "rss_idle": f["idle_rss_bytes"] / 2**20, "rss_held": f["held_rss_bytes"] / 2**20,
        "anon_idle": f["idle_rss_anon_bytes"] / 2**20, "anon_held": f["held_rss_anon_bytes"] / 2**20,
    }


def bluesky(a, tmpdir):
    """One round of Bluesky's RunEngine: one fresh child process per plan (the script's own child mode)."""
    script = os.path.join(a.peers, "bluesky_overhead.py")
    figures, took = {}, 0.0
    for key, plan, n in (("count", "count", a.count_steps), ("scan", "scan", a.scan_steps), ("run", "runs", a.bluesky_runs)):
        out, t = run([a.python, script, "--tmpdir", tmpdir, "--child", plan, str(n), a.bluesky_mode])
        took += t
        r = json.loads(out.strip().splitlines()[-1])
        figures[key] = r["seconds"] / n
    return took, figures


def cells(line):
    return [c.strip() for c in line.strip().strip("|").split("|")]


def seconds(text):
    value, unit = text.split()
    return float(value) * {"s": 1.0, "ms": 1e-3}[unit]


def queueserver(a):
    """One round of bluesky-queueserver (one rep of queue_api.py), read from the table it prints."""
    out, took = run([a.python, os.path.join(a.peers, "queue_api.py"), "--reps", "1", "--items", "1000",
                     "--runs", str(a.queue_runs)])
    figures = {}
    for line in out.splitlines():
        if not line.startswith("|"):
            continue
        c = cells(line)
        if c[0].startswith("item_add single-call latency"):
            figures["add"] = seconds(c[1].split("/")[0])
        elif c[0].startswith("item_add_batch of 1000"):
            figures["many"] = seconds(c[1])
        elif c[0].startswith(f"execute {a.queue_runs} x count"):
            figures["queued"] = seconds(c[1]) / a.queue_runs
    missing = {"add", "many", "queued"} - figures.keys()
    if missing:
        sys.exit(f"queue_api.py printed no {sorted(missing)}; its output was:\n{out}")
    return took, figures


def rows(a):
    return [
    # key, figure, peer, unit, scale, target
    ("count", "per step, `count`-like: N readings of one channel, every reading stored", "Bluesky `count`", "µs", 1e6, "≤ 20 µs"),
    ("scan", "per step, `scan`-like: N × (set, read), every reading stored", "Bluesky `scan`", "µs", 1e6, "≤ 20 µs"),
    ("run", "fixed cost per run (one reading)", "Bluesky `RE(count(num=1))`", "ms", 1e3, ""),
    ("add", "queue one run, until acknowledged", "queueserver `item_add` p50", "ms", 1e3, ""),
    ("queued", "queued trivial run, submission to committed `completed`", f"queueserver per plan ({a.queue_runs} runs back to back)", "ms", 1e3, "≤ 2 ms"),
    ("many", "1,000 runs in one call, until acknowledged (committed)", "queueserver `item_add_batch`", "ms", 1e3, "≤ 100 ms"),
    ("rss_idle", "resident memory (VmRSS), idle daemon", "", "MiB", 1, "≤ 30 MiB"),
    ("rss_held", f"resident memory, {a.held_runs // 1000 * 1000:,} runs queued", "", "MiB", 1, "flat"),
    ("anon_idle", "  of which anonymous (RssAnon), idle", "", "MiB", 1, ""),
    ("anon_held", f"  of which anonymous, {a.held_runs // 1000 * 1000:,} runs queued", "", "MiB", 1, ""),
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--serendip", default=".build/release/serendip")
    ap.add_argument("--python", default=".build/peers-venv/bin/python", help="the peers' virtualenv python")
    ap.add_argument("--peers", default="../shared/peers")
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--count-steps", type=int, default=2000, help="N of the count-like runs, both sides")
    ap.add_argument("--scan-steps", type=int, default=500, help="N of the scan-like runs, both sides")
    ap.add_argument("--bluesky-runs", type=int, default=20, help="1-reading runs timed for Bluesky's fixed cost")
    ap.add_argument("--bluesky-mode", default="store", help="bluesky_overhead.py callbacks: store (keep every document), none, sqlite")
    ap.add_argument("--queue-runs", type=int, default=20, help="plans queue_api.py runs back to back")
    ap.add_argument("--queued-runs", type=int, default=50, help="our trivial runs timed one at a time")
    ap.add_argument("--held-runs", type=int, default=10000)
    ap.add_argument("--json", help="also write every round's figures here")
    a = ap.parse_args()
    a.queue_runs = max(2, a.queue_runs)

    tmpdir = tempfile.mkdtemp(prefix="bench-peers-")
    rounds = []
    for i in range(a.rounds):
        sides = [("ours", lambda: ours(a)), ("bluesky", lambda: bluesky(a, tmpdir)), ("queueserver", lambda: queueserver(a))]
        if i % 2:
            sides.reverse()
        result = {}
        for name, measure in sides:
            took, result[name] = measure()
            print(f"round {i + 1}/{a.rounds}: {name} {took:.1f} s", file=sys.stderr, flush=True)
        rounds.append(result)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rounds, f, indent=1)

    med = statistics.median
    print(f"\nSerendip daemon vs peers, {a.rounds} interleaved rounds (N = {a.count_steps} for count, {a.scan_steps} for scan; "
          f"Bluesky callbacks: {a.bluesky_mode}). Ratio = peer / ours per round: how many times faster we are.\n")
    print("| figure | target | ours (median) | peer | peer (median) | ratio (median) | ratio spread (min–max) |")
    print("| --- | --- | ---: | --- | ---: | ---: | --- |")
    for key, figure, peer, unit, scale, target in rows(a):
        ours_values = [r["ours"][key] * scale for r in rounds]
        peer_side = "bluesky" if key in ("count", "scan", "run") else "queueserver"
        peer_values = [r[peer_side][key] * scale for r in rounds if key in r[peer_side]]
        if peer_values:
            ratios = [p / o for p, o in zip(peer_values, ours_values)]
            print(f"| {figure} | {target} | {med(ours_values):.3g} {unit} | {peer} | {med(peer_values):.3g} {unit} "
                  f"| {med(ratios):.3g}× | {min(ratios):.3g}–{max(ratios):.3g}× |")
        else:
            print(f"| {figure} | {target} | {med(ours_values):.3g} {unit} (min {min(ours_values):.3g}, max {max(ours_values):.3g}) "
                  f"| — | — | — | — |")


if __name__ == "__main__":
    main()

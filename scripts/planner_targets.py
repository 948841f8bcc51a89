#!/usr/bin/env python3
"""Checks the planner issue's targets against saved peer-benchmark runs (bo_peers.py --json).

    python3 scripts/planner_targets.py RUN.json...          median regret and time per proposal
    python3 scripts/planner_targets.py --stuck RUN.json     runs ending with regret >= 0.01, per method

Prints one line per target with the measured figures and PASS or MISS; exits 0 either way (the
figures are the point, not a gate).
"""
import json
import statistics
import sys

OURS = "external:"


def load(path):
    with open(path) as fh:
        data = json.load(fh)
    runs = [r for r in data["runs"] if not r.get("error")]
    by_method = {}
    for r in runs:
        by_method.setdefault(r["method"], []).append(r)
    return data["meta"]["function"], by_method


def main(paths):
    for path in paths:
        function, by_method = load(path)
        ours = next((m for m in by_method if m.startswith(OURS)), None)
        if ours is None:
            print(f"{function}: no run of our planner in {path}")
            continue
        median = {m: statistics.median(r["regret"] for r in rs) for m, rs in by_method.items()}
        peers = {m: v for m, v in median.items() if m != ours and m != "random"}
        best_peer = min(peers, key=peers.get) if peers else None
        if best_peer:
            ok = median[ours] <= peers[best_peer]
            print(f"{function}: median regret {median[ours]:.3g} vs best peer {best_peer} {peers[best_peer]:.3g}"
                  f" -> {'PASS' if ok else 'MISS'}")
        if "optuna_gp" in by_method:
            t_ours = statistics.median(r["sec_per_proposal"] for r in by_method[ours])
            t_optuna = statistics.median(r["sec_per_proposal"] for r in by_method["optuna_gp"])
            print(f"{function}: time per proposal {t_ours * 1e3:.1f} ms vs optuna_gp {t_optuna * 1e3:.1f} ms"
                  f" (ratio 1/{t_optuna / t_ours:.0f}) -> {'PASS' if t_ours * 10 <= t_optuna else 'MISS'}")


def stuck(paths):
    """Counts, per method, the seeds whose run ended with regret >= 0.01, over the seeds every
    method finished (the same seeds for everyone)."""
    for path in paths:
        function, by_method = load(path)
        seeds = set.intersection(*({r["seed"] for r in rs} for rs in by_method.values()))
        counts = {m: sum(1 for r in rs if r["seed"] in seeds and r["regret"] >= 0.01) for m, rs in by_method.items()}
        for m, c in sorted(counts.items(), key=lambda kv: kv[1]):
            print(f"{function}: {m}: {c} of {len(seeds)} seeds stuck (regret >= 0.01)")
        ours = next((m for m in counts if m.startswith(OURS)), None)
        peers = {m: c for m, c in counts.items() if m != ours and m != "random"}
        if ours and peers:
            best = min(peers, key=peers.get)
            print(f"{function}: stuck {counts[ours]} vs best peer {best} {peers[best]}"
                  f" -> {'PASS' if counts[ours] <= peers[best] else 'MISS'}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--stuck"]:
        stuck(sys.argv[2:])
    else:
        main(sys.argv[1:])

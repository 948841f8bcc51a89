#!/usr/bin/env python3
"""Checks the planner issue's targets against saved peer-benchmark runs (bo_peers.py --json).

    python3 scripts/planner_targets.py RUN.json...          median regret and time per proposal
    python3 scripts/planner_targets.py --stuck RUN.json...  runs ending with regret >= 0.01, per method

Files with the same setup (function, budget, initial points, noise) are merged, so a benchmark run
in blocks (one method or ten seeds at a time) is checked as one.

Prints one line per target with the measured figures and PASS or MISS; exits 0 either way (the
figures are the point, not a gate).
"""
import json
import statistics
import sys

OURS = "external:"


def ours_of(function, by_method):
    """Our planner's method name (an external command); more than one is an error."""
    ours = [m for m in by_method if m.startswith(OURS)]
    if len(ours) > 1:
        raise SystemExit(f"{function}: more than one run of an external planner: {ours}")
    return ours[0] if ours else None


def load(paths):
    """The runs of every file, grouped by setup: {setup: {method: [runs]}}."""
    setups = {}
    for path in paths:
        with open(path) as fh:
            data = json.load(fh)
        meta = data["meta"]
        setup = (f"{meta['function']}/{meta['budget']}" + (f" n_init {meta['n_init']}" if meta["n_init"] != 5 else "")
                 + (f" noise {meta['noise_sd']}" if meta.get("noise_sd") else ""))
        for r in data["runs"]:
            if not r.get("error"):  # a seed run twice (in two files) counts once: the later file's
                setups.setdefault(setup, {}).setdefault(r["method"], {})[r["seed"]] = r
    return {setup: {m: list(rs.values()) for m, rs in methods.items()} for setup, methods in setups.items()}


def main(paths):
    for function, by_method in load(paths).items():
        ours = ours_of(function, by_method)
        if ours is None:
            print(f"{function}: no run of our planner")
            continue
        # Every method on the seeds our planner ran, so that the medians are of the same seeds.
        seeds = {r["seed"] for r in by_method[ours]}
        by_method = {m: [r for r in rs if r["seed"] in seeds] for m, rs in by_method.items()}
        by_method = {m: rs for m, rs in by_method.items() if rs}
        for m, rs in by_method.items():
            if len(rs) < len(seeds):
                print(f"{function}: {m} ran {len(rs)} of our {len(seeds)} seeds")
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
    """Counts, per method, the seeds whose run ended with regret >= 0.01. Our planner is compared
    only with peers that ran every seed it ran (the same seeds for both)."""
    for function, by_method in load(paths).items():
        ours = ours_of(function, by_method)
        our_seeds = {r["seed"] for r in by_method.get(ours, [])}
        peers = {}
        for m, rs in sorted(by_method.items()):
            seeds = {r["seed"] for r in rs}
            print(f"{function}: {m}: {sum(r['regret'] >= 0.01 for r in rs)} of {len(seeds)} seeds stuck"
                  f" (regret >= 0.01; seeds {min(seeds)}-{max(seeds)})")
            if m not in (ours, "random") and our_seeds <= seeds:
                peers[m] = sum(r["seed"] in our_seeds and r["regret"] >= 0.01 for r in rs)
        if ours and peers:
            mine = sum(r["regret"] >= 0.01 for r in by_method[ours])
            best = min(peers, key=peers.get)
            print(f"{function}: stuck {mine} vs best peer {best} {peers[best]} on the same {len(our_seeds)} seeds"
                  f" -> {'PASS' if mine <= peers[best] else 'MISS'}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--stuck"]:
        stuck(sys.argv[2:])
    else:
        main(sys.argv[1:])

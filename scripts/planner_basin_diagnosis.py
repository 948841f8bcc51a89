#!/usr/bin/env python3
"""Where a planner's Hartmann-6 campaigns went: for each seed, the regret, how far the best initial
point lay from the global and from the second-best minimiser, and how close any evaluated point
came to the global one (decision 15). Runs the planner as bo_peers.py does, with its recorder.

    PYTHON scripts/planner_basin_diagnosis.py --peers /work/shared/peers \
        --planner "/path/to/serendip planner --stdio" --seeds 4,16,17 [--budget 60 --n-init 5]

PYTHON is the peers' virtualenv (it needs bo_peers.py's numpy). Distances are Euclidean in the unit cube.
"""
import argparse
import sys

import numpy as np

GLOBAL = np.array([0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573])
# The fourth term's minimum (−3.203): the broad basin that stuck campaigns end in.
SECOND = np.array([0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peers", required=True, help="directory holding bo_peers.py")
    ap.add_argument("--planner", required=True, help="command speaking the JSON-lines protocol")
    ap.add_argument("--seeds", required=True, help="comma list")
    ap.add_argument("--budget", type=int, default=60)
    ap.add_argument("--n-init", type=int, default=5)
    args = ap.parse_args()
    sys.path.insert(0, args.peers)
    import bo_peers as bp

    problem = bp.make_problem("hartmann6")
    for seed in (int(s) for s in args.seeds.split(",")):
        rec = bp.Recorder(problem["f"], 0.0, np.random.default_rng(99_991 + seed))
        bp.make_external(args.planner)(rec, problem["bounds"], args.budget, args.n_init, seed)
        x, y = np.array(rec.xs), np.array(rec.ys_true)
        to_global, to_second = np.linalg.norm(x - GLOBAL, axis=1), np.linalg.norm(x - SECOND, axis=1)
        first = int(np.argmin(y[:args.n_init]))
        near = np.flatnonzero(to_global < 0.35)
        print(f"seed {seed}: regret {y.min() - problem['fopt']:.3g}; best initial point f={y[first]:.2f}, "
              f"{to_global[first]:.2f} from the global minimiser, {to_second[first]:.2f} from the second; "
              f"closest approach to the global {to_global.min():.2f}; evaluations within 0.35 of it: "
              f"{len(near)}{' from #' + str(near[0] + 1) if len(near) else ''}")


if __name__ == "__main__":
    main()

"""Whether a planner or its starting points decide a campaign (decision 15): runs BayBE continued
from our planner's five initial points ('baybe'), our planner continued from BayBE's five random
ones ('ours'), or each from its own start ('baybe-own', 'ours-own', as bo_peers.py runs them).
Results and noise come from bo_peers.py's Recorder, seeded as it seeds it. Prints "seed regret" per line.

    PEERS=../shared/peers SERENDIP=.build/release/serendip .build/peers-venv/bin/python \
        scripts/planner_swap_starts.py WHICH FUNCTION BUDGET NOISE_SD FIRST_SEED END_SEED
"""
import json, os, subprocess, sys, warnings
import numpy as np
sys.path.insert(0, os.environ.get("PEERS", "../shared/peers"))
import bo_peers as bp
warnings.filterwarnings("ignore")
which, fname, budget, noise_sd, lo, hi = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
prob = bp.make_problem(fname)
f, fopt, bounds = prob["f"], prob["fopt"], [list(b) for b in prob["bounds"]]
d, n_init = len(bounds), 5
SERENDIP = [os.environ.get("SERENDIP", ".build/release/serendip"), "planner", "--stdio"]

def recorder(seed):
    """bo_peers.py's own recorder, seeded as it seeds it: the same noise for the same seed."""
    rec = bp.Recorder(f, noise_sd, np.random.default_rng(99_991 + seed))
    rec.start()
    return rec

def planner(seed):
    p = subprocess.Popen(SERENDIP, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    def call(m):
        p.stdin.write(json.dumps(m) + "\n"); p.stdin.flush(); return json.loads(p.stdout.readline())
    call(dict(op="init", dim=d, bounds=bounds, budget=budget, n_init=n_init, seed=seed, minimize=True))
    return p, call

def ours(seed, init):
    p, call = planner(seed); ev = recorder(seed)
    xs = init if init is not None else [call(dict(op="ask"))["x"] for _ in range(n_init)]
    for x in xs: call(dict(op="tell", x=x, y=ev(x)))
    for _ in range(budget - n_init):
        x = call(dict(op="ask"))["x"]; call(dict(op="tell", x=x, y=ev(x)))
    p.kill(); return min(ev.ys_true) - fopt

def our_start(seed):
    p, call = planner(seed); xs = [call(dict(op="ask"))["x"] for _ in range(n_init)]; p.kill(); return xs

def baybe(seed, init, start_only=False):
    import pandas as pd
    from baybe import Campaign
    from baybe.parameters import NumericalContinuousParameter
    from baybe.recommenders import BotorchRecommender, RandomRecommender, TwoPhaseMetaRecommender
    from baybe.searchspace import SearchSpace
    from baybe.targets import NumericalTarget
    from baybe.utils.random import set_random_seed
    set_random_seed(seed)
    names = [f"x{i}" for i in range(d)]
    space = SearchSpace.from_product([NumericalContinuousParameter(n, bounds=tuple(b)) for n, b in zip(names, bounds)])
    campaign = Campaign(searchspace=space, objective=NumericalTarget(name="y", minimize=True).to_objective(),
                        recommender=TwoPhaseMetaRecommender(initial_recommender=RandomRecommender(),
                                                            recommender=BotorchRecommender(), switch_after=n_init))
    ev = recorder(seed)
    def step():
        df = campaign.recommend(batch_size=1); x = [float(df[n].iloc[0]) for n in names]
        df["y"] = [ev(x)]; campaign.add_measurements(df); return x
    if init is None:
        xs = [step() for _ in range(n_init)]
        if start_only: return xs
    else:
        campaign.add_measurements(pd.DataFrame([dict(zip(names, x), y=ev(x)) for x in init]))
    for _ in range(budget - n_init): step()
    return min(ev.ys_true) - fopt

for seed in range(lo, hi):
    r = {"baybe": lambda: baybe(seed, our_start(seed)), "ours": lambda: ours(seed, baybe(seed, None, start_only=True)),
         "baybe-own": lambda: baybe(seed, None), "ours-own": lambda: ours(seed, None)}[which]()
    print(seed, f"{r:.4g}", flush=True)

#!/usr/bin/env python3
"""bo_peers.py (../shared/peers) with two more planners, run by `make bench-planner`:

  hebo   HEBO (Huawei Noah's Ark, winner of the NeurIPS 2020 black-box optimisation challenge),
         library defaults: GP with input and output warping, a multi-objective acquisition
         ensemble (EI, PI, UCB) solved by NSGA-II; `rand_sample` = n_init.
  smac   SMAC3's BlackBoxFacade (a GP with EI, its default for continuous black-box problems),
         its own Sobol initial design of n_init points, ask/tell.

Every argument is bo_peers.py's (`--peers DIR` says where it is). The methods are registered when
this file is imported, so bo_peers' worker processes (`--jobs`, spawned) know them too.
"""
import os
import sys
import tempfile

PEERS = os.environ.get("SERENDIP_PEERS", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "peers"))
if "--peers" in sys.argv:
    PEERS = sys.argv[sys.argv.index("--peers") + 1]
    del sys.argv[sys.argv.index("--peers"):sys.argv.index("--peers") + 2]
    os.environ["SERENDIP_PEERS"] = PEERS
sys.path.insert(0, os.path.abspath(PEERS))

import bo_peers  # noqa: E402


def run_hebo(rec, bounds, budget, n_init, seed):
    import numpy as np
    import pandas as pd  # noqa: F401  (HEBO speaks DataFrames)
    import torch
    from hebo.design_space.design_space import DesignSpace
    from hebo.optimizers.hebo import HEBO
    np.random.seed(seed)
    torch.manual_seed(seed)
    space = DesignSpace().parse([dict(name=f"x{i}", type="num", lb=lo, ub=hi) for i, (lo, hi) in enumerate(bounds)])
    opt = HEBO(space, rand_sample=n_init, scramble_seed=seed)
    names = [f"x{i}" for i in range(len(bounds))]
    rec.start()
    for _ in range(budget):
        suggestion = opt.suggest(n_suggestions=1)
        y = rec([float(suggestion[n].iloc[0]) for n in names])
        opt.observe(suggestion, np.array([[y]]))


def run_smac(rec, bounds, budget, n_init, seed):
    from ConfigSpace import ConfigurationSpace, Float
    from smac import BlackBoxFacade, Scenario
    from smac.runhistory.dataclasses import TrialValue
    space = ConfigurationSpace(seed=seed)
    names = [f"x{i}" for i in range(len(bounds))]
    space.add([Float(n, (lo, hi)) for n, (lo, hi) in zip(names, bounds)])
    with tempfile.TemporaryDirectory() as out:
        scenario = Scenario(space, deterministic=True, n_trials=budget, seed=seed, output_directory=out)
        design = BlackBoxFacade.get_initial_design(scenario, n_configs=n_init)
        smac = BlackBoxFacade(scenario, lambda config, seed=0: 0.0, initial_design=design, overwrite=True,
                              logging_level=40)
        rec.start()
        for _ in range(budget):
            info = smac.ask()
            y = rec([float(info.config[n]) for n in names])
            smac.tell(info, TrialValue(cost=y))


bo_peers.METHODS["hebo"] = run_hebo
bo_peers.METHODS["smac"] = run_smac

if __name__ == "__main__":
    bo_peers.main()

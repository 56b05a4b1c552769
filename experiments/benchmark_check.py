"""Throughput of the integrity check (``symopt.check``), in graphs per second.

Run: ``python experiments/benchmark_check.py``. Prints one JSON object:
graphs/s on random graphs of the ``nos`` space (a mix of accepted and
rejected ones, as a search meets them), on the zoo, and the share of each
rejection reason among the random graphs.
"""

import collections
import json
import time

import numpy as np

import symopt
from symopt.spaces import nos


def _rate(graphs, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for graph in graphs:
            symopt.check(graph)
        best = min(best, time.perf_counter() - start)
    return len(graphs) / best


def main() -> None:
    rng = np.random.default_rng(0)
    random_graphs = [nos.sample(rng) for _ in range(2000)]
    zoo_graphs = [symopt.zoo.get(n) for n in symopt.zoo.names()] * 50
    reasons = collections.Counter(symopt.check(g).reason for g in random_graphs)
    print(json.dumps({
        "random_graphs_per_s": round(_rate(random_graphs)),
        "zoo_graphs_per_s": round(_rate(zoo_graphs)),
        "random_reasons": {k: v / len(random_graphs) for k, v in reasons.most_common()},
    }, indent=1))


if __name__ == "__main__":
    main()

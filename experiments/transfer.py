"""Transfer evaluation of found optimizers against the comparisons and zoo optimizers
(``symopt.transfer``).

    python -m symopt.transfer --config=experiments/transfer.py \
        --graphs=runs/digits/best.json --out=runs/transfer

Three offline tasks, cheapest first, 3 seeds, learning rates 0.1x-10x each
optimizer's own (the val-best chosen per task, the grid extended past an
edge where the val-best is there); after each task the better half, scored
by final validation loss against Adam's (``evaluation.metric`` ``loss``, as
``experiments/generalize.py`` searches), goes on. The comparisons are the
test tasks' (``symopt.comparisons.COMPARISONS``: tuned baselines at their
authors' schedules, Muon and schedule-free AdamW optax's own) and the zoo's
default transfer set; ``lr_<task>.png`` shows how wide each one's good range
of rates is. TFDS tasks (e.g. ``--config.transfer.tasks=digits_mlp,cifar10``)
read ``--config.tasks.data_dir``; ``--config.evaluation.strategy`` chooses how
the population trains.
"""

from symopt.comparisons import COMPARISONS
from symopt.config import default_config, names


def get_config():
    config = default_config()
    config.transfer.tasks = "digits_mlp,digits_cnn,mnist1d_mlp"
    config.transfer.seeds = 3
    config.transfer.lr_multipliers = (0.1, 0.3, 1.0, 3.0, 10.0)
    config.transfer.comparisons = ",".join(
        dict.fromkeys([*COMPARISONS.names(), *names(config.transfer.comparisons)]))
    config.transfer.keep = 0.5
    config.evaluation.metric = "loss"
    return config

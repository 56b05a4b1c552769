"""Transfer evaluation of found optimizers against the baselines (``symopt.transfer``).

    python -m symopt.transfer --config=experiments/transfer.py \
        --graphs=runs/digits/best.json --out=runs/transfer

Three offline tasks, cheapest first, 3 seeds, learning rates 0.1x-10x each
optimizer's own (the val-best chosen per task); after each task the better
half, scored by final validation loss against Adam's (``metric="loss"``, as
``experiments/generalize.py`` searches), goes on. TFDS tasks (e.g.
``--config.tasks=digits_mlp,cifar10``) read ``--config.data_dir``.
"""

from symopt.transfer import default_config


def get_config():
    config = default_config()
    config.tasks = "digits_mlp,digits_cnn,mnist1d_mlp"
    config.seeds = 3
    config.lr_multipliers = (0.1, 0.3, 1.0, 3.0, 10.0)
    config.keep = 0.5
    config.metric = "loss"
    return config

"""``train``: train or finetune an SSD (optionally prune it first), resumable, with logs and curves."""

from __future__ import annotations


def add_parser(sub) -> None:
    from hrank_ssd.train.training import add_train_arguments

    p = sub.add_parser("train", help="train/finetune an SSD on VOC-format data (prune first with --compress_rate)",
                       description=__doc__)
    add_train_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from hrank_ssd.train.training import TrainConfig, train

    result = train(TrainConfig.from_namespace(args))
    if result.final_model is not None:
        print(result.final_model)
    return 0

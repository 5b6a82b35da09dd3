"""HRank (Lin et al., CVPR 2020): the average matrix rank of each filter's post-ReLU output maps; the highest stay."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np
import torch

from hrank_ssd.devices import evaluating, model_on
from hrank_ssd.errors import HRankError
from hrank_ssd.io.files import atomic_save_npy
from hrank_ssd.nets.models import layer_names
from hrank_ssd.nets.registry import get_net, num_prunable
from hrank_ssd.nets.ssd import SSD
from hrank_ssd.progress import tqdm


class _StopForward(Exception):
    """Raised by the last hook: nothing after the last prunable layer is needed."""


def _on_threads(fn, items, workers: int) -> list:
    """``fn`` over ``items`` on ``workers`` threads of one core each (torch releases the GIL in the SVD)."""
    main_threads = torch.get_num_threads()

    def one_core(item):
        torch.set_num_threads(1)  # else each worker starts its own OpenMP team and they fight for the cores
        return fn(item)

    try:
        with ThreadPoolExecutor(min(workers, len(items))) as pool:
            return list(pool.map(one_core, items))
    finally:
        torch.set_num_threads(main_threads)  # torch keeps the workers' setting as its process-wide default


def batched_ranks(maps: torch.Tensor, chunk: int = 4096, workers: Optional[int] = None) -> torch.Tensor:
    """Matrix rank of every (H, W) map of a (B, C, H, W) tensor -> (B, C) floats; on CPU over ``workers`` threads."""
    flat = maps.detach().float().reshape(-1, *maps.shape[-2:])
    ranks = torch.zeros(flat.size(0), device=flat.device)
    live = flat.flatten(1).ne(0).any(1).nonzero().flatten()  # an all-zero (dead) map has rank 0: no SVD
    if workers is None:
        workers = torch.get_num_threads() if flat.device.type == "cpu" else 1
    step = max(1, min(chunk, -(-live.numel() // max(1, workers))))
    pieces = [live[i:i + step] for i in range(0, live.numel(), step)]
    if workers > 1 and len(pieces) > 1:
        results = _on_threads(lambda idx: torch.linalg.matrix_rank(flat[idx]), pieces, workers)
    else:
        results = [torch.linalg.matrix_rank(flat[idx]) for idx in pieces]
    for idx, r in zip(pieces, results):
        ranks[idx] = r.float()
    return ranks.reshape(maps.shape[:2])


def ranks_one_at_a_time(maps: torch.Tensor) -> torch.Tensor:
    """The original HRank loop: one ``matrix_rank`` call per image and channel (the slow baseline)."""
    b, c = maps.shape[:2]
    return torch.tensor([[torch.linalg.matrix_rank(maps[i, j].float()).item() for j in range(c)]
                         for i in range(b)], dtype=torch.float32)


def compute_ranks(model: SSD, batches: Iterable[torch.Tensor], device="cpu", total: Optional[int] = None,
                  progress: bool = True) -> List[np.ndarray]:
    """Average rank per output channel of each prunable layer over ``batches`` (the caller's model is not moved),
    summed by forward hooks on every prunable layer's ReLU."""
    model, net = model_on(model, device), model.cfg.name
    n = num_prunable(net)
    sums: List[torch.Tensor] = [torch.zeros(c) for c in model.plan.prunable]
    images = 0

    def hook(i: int):
        def add(module, inputs, output):
            sums[i] += batched_ranks(output).sum(0).cpu()
            if i == n - 1:
                raise _StopForward

        return add

    modules = dict(model.named_modules())
    handles = [modules[get_net(net).activation_key(i)].register_forward_hook(hook(i)) for i in range(n)]
    try:
        with evaluating(model), torch.no_grad():
            for batch in tqdm(batches, total=total, desc="ranks", unit="batch", disable=not progress):
                try:
                    model(batch.to(device))
                except _StopForward:
                    pass
                images += batch.size(0)
    finally:
        for h in handles:
            h.remove()
    if images == 0:
        raise HRankError("no images went through the model: the dataset or --limit is empty")
    return [(s / images).numpy().astype(np.float32) for s in sums]


def image_batches(dataset, batch_size: int, limit: int, shuffle: bool = False, seed: int = 0):
    """``limit`` batches of test-transformed images, in listed order unless ``shuffle``."""
    if len(dataset) == 0:
        raise HRankError("the dataset is empty: check --dataset and its ImageSets split file")
    order = (torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).tolist() if shuffle
             else list(range(len(dataset))))[: batch_size * limit]
    for start in range(0, len(order), batch_size):
        yield torch.stack([dataset[i][0] for i in order[start:start + batch_size]])


def rank_file(rank_dir, layer: int) -> Path:
    """``rank_dir/rank_conv{layer}.npy``: HRank's name for the ranks of prunable layer ``layer`` (1-based)."""
    return Path(rank_dir) / f"rank_conv{layer}.npy"


def has_ranks(rank_dir, net: str) -> bool:
    """Whether ``rank_dir`` holds a rank file for every prunable layer of ``net``."""
    return all(rank_file(rank_dir, i).is_file() for i in range(1, num_prunable(net) + 1))


def save_ranks(ranks: List[np.ndarray], rank_dir) -> List[Path]:
    """Write ``rank_conv{i}.npy`` (1-based, float32), the file names of HRank."""
    paths = [rank_file(rank_dir, i) for i in range(1, len(ranks) + 1)]
    for path, r in zip(paths, ranks):
        atomic_save_npy(np.asarray(r, dtype=np.float32), path)
    return paths


def rank_summary(ranks: List[np.ndarray], net: str) -> List[Dict]:
    """Per layer: name, filters, min/mean/max rank (for tables and the course's histograms)."""
    return [{"layer": i + 1, "name": n, "filters": int(r.size), "min": float(r.min()), "mean": float(r.mean()),
             "max": float(r.max())} for i, (n, r) in enumerate(zip(layer_names(net), ranks))]


def load_ranks(rank_dir, net: str, channels: Sequence[int]) -> List[np.ndarray]:
    """``rank_dir/rank_conv{i}.npy`` for every prunable layer (1-based, HRank's naming)."""
    rank_dir = Path(rank_dir)
    if not rank_dir.is_dir():
        raise HRankError(f"rank folder not found: {rank_dir}; make it with `python -m hrank_ssd rank ...` "
                         f"or download the original one with `python -m hrank_ssd download vgg16-ssd-ranks`")
    ranks = []
    for i, c in enumerate(channels, start=1):
        path = rank_file(rank_dir, i)
        if not path.is_file():
            raise HRankError(f"{path} is missing: the rank folder needs rank_conv1.npy ... "
                             f"rank_conv{len(channels)}.npy; regenerate it with `python -m hrank_ssd rank`")
        try:
            r = np.load(path).astype(np.float64).reshape(-1)
        except Exception:
            raise HRankError(f"{path} is not a readable .npy file; regenerate the ranks") from None
        if r.size != c:
            raise HRankError(f"{path} has {r.size} values but layer {i} ({layer_names(net)[i - 1]}) has {c} "
                             f"filters: these ranks belong to another model")
        ranks.append(r)
    return ranks

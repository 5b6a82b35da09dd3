"""Filter pruning: choose each prunable conv's kept filters, then slice every tensor into a smaller model."""

from __future__ import annotations

import copy
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from hrank_ssd.errors import HRankError
from hrank_ssd.hrank.ranks import load_ranks
from hrank_ssd.nets.compress import layer_rates
from hrank_ssd.nets.models import build_model, layer_names, save_model
from hrank_ssd.nets.registry import get_net, num_prunable
from hrank_ssd.nets.spec import Rule
from hrank_ssd.nets.ssd import SSD, ChannelPlan, kept_channels

CRITERIA = ("hrank", "l1", "random")


def _rules(net: str) -> Callable[[str], Rule]:
    """Tensor key -> (layer whose kept filters index its dim 0, layer whose kept filters index its dim 1)."""
    rules = get_net(net).slice_rules()
    return lambda key: rules.get(key.rsplit(".", 1)[0], (None, None))


def l1_scores(model: SSD) -> List[np.ndarray]:
    """Filter L1 norms (Li et al. 2017), one array per prunable layer."""
    spec, state = get_net(model.cfg.name), model.state_dict()
    return [state[spec.producer_key(i) + ".weight"].detach().abs().flatten(1).sum(1).double().cpu().numpy()
            for i in range(spec.num_prunable)]


def select_filters(scores: np.ndarray, keep: int) -> List[int]:
    """Indices of the ``keep`` highest scores, ascending. Ties drop the lower index first (stable sort)."""
    order = np.argsort(scores, kind="stable")
    return sorted(int(i) for i in order[len(scores) - keep:])


def round_keep(keep: int, channels: int, round_to: Optional[int]) -> int:
    """Round a kept count up to a multiple of ``round_to`` (fast kernels like multiples of 8)."""
    return min(channels, -(-keep // round_to) * round_to) if round_to and round_to > 1 else keep


def kept_indices(model: SSD, compress_rate: Sequence[float], criterion: str = "hrank", rank_dir=None, seed: int = 0,
                 round_to: Optional[int] = None, select: Callable = select_filters) -> Dict[str, List[int]]:
    """Filters each prunable layer keeps at ``compress_rate``, by layer name (``select``: a student's own picker)."""
    rates = layer_rates(compress_rate, num_prunable(model.cfg.name))
    widths = [round_keep(kept_channels(c, rate), c, round_to) for c, rate in zip(model.plan.prunable, rates)]
    return kept_indices_for_widths(model, widths, criterion, rank_dir, seed, select)


def criterion_scores(model: SSD, criterion: str = "hrank", rank_dir=None, seed: int = 0) -> List[np.ndarray]:
    """One score per filter of every prunable layer under ``criterion`` (higher = keep first)."""
    if criterion not in CRITERIA:
        raise HRankError(f"unknown --criterion {criterion!r}: choose one of {', '.join(CRITERIA)}")
    channels = model.plan.prunable
    if criterion == "hrank":
        if not rank_dir:
            raise HRankError("--criterion hrank needs --rank_dir (make ranks with `python -m hrank_ssd rank`), "
                             "or use --criterion l1")
        return load_ranks(rank_dir, model.cfg.name, channels)
    if criterion == "l1":
        return l1_scores(model)
    rng = np.random.default_rng(seed)
    return [rng.permutation(c).astype(np.float64) for c in channels]


def kept_indices_for_widths(model: SSD, widths, criterion: str = "hrank", rank_dir=None,
                            seed: int = 0, select: Callable = select_filters) -> Dict[str, List[int]]:
    """Filters each prunable layer keeps by ``criterion`` at ``widths`` (kept counts in layer order)."""
    names, channels, widths = layer_names(model.cfg.name), model.plan.prunable, [int(k) for k in widths]
    if len(widths) != len(names):
        raise HRankError(f"{len(widths)} widths for {len(names)} prunable layers; give one kept count per layer")
    for name, k, c in zip(names, widths, channels):
        if not 1 <= k <= c:
            raise HRankError(f"layer {name} has {c} filters: it can keep 1 to {c}, not {k}")
    scores = criterion_scores(model, criterion, rank_dir, seed)
    return {name: sorted(int(i) for i in select(s.copy(), k)) for name, s, k in zip(names, scores, widths)}


def kept_agreement(model: SSD, compress_rate: Sequence[float], rank_dir, other_rank_dir) -> List[Dict]:
    """Per prunable layer: how many filters HRank keeps under both ``rank_dir`` and ``other_rank_dir``."""
    a, b = (kept_indices(model, compress_rate, "hrank", d) for d in (rank_dir, other_rank_dir))
    both = {n: len(set(a[n]) & set(b[n])) for n in a}
    return [{"layer": n, "filters": c, "kept": len(a[n]), "kept_by_both": both[n], "agreement": both[n] / len(a[n])}
            for n, c in zip(layer_names(model.cfg.name), model.plan.prunable)]


def _index_lists(model: SSD, kept: Dict[str, List[int]]) -> List[torch.Tensor]:
    names = layer_names(model.cfg.name)
    missing = [n for n in names if n not in kept]
    if missing:
        raise HRankError(f"kept indices miss layers {missing}; pass one index list per prunable layer")
    out = []
    for name, c in zip(names, model.plan.prunable):
        idx = torch.as_tensor(kept[name], dtype=torch.long)
        if idx.numel() == 0 or int(idx.min()) < 0 or int(idx.max()) >= c or idx.unique().numel() != idx.numel():
            raise HRankError(f"kept indices of {name} must be distinct filters in [0, {c}); got {idx.tolist()[:8]}...")
        out.append(idx.sort().values)
    return out


def apply_kept(model: SSD, kept: Dict[str, List[int]]) -> SSD:
    """A new, smaller model of ``model``'s kept filters, on its device and in its mode (``model`` unchanged)."""
    net = model.cfg.name
    index = _index_lists(model, kept)
    widths = [idx.numel() for idx in index] + list(model.plan.base[len(index):])
    plan = ChannelPlan(widths, list(model.plan.extras), model.plan.num_prunable)
    pruned = build_model(net, model.num_classes, plan=plan, image_size=model.image_size)
    rule, new_state = _rules(net), {}
    for key, t in model.state_dict().items():
        out_layer, in_layer = rule(key)
        if out_layer is not None and t.dim() >= 1:
            t = t.index_select(0, index[out_layer].to(t.device))
        if in_layer is not None and t.dim() >= 2:
            t = t.index_select(1, index[in_layer].to(t.device))
        new_state[key] = t  # load_state_dict copies into the new model
    pruned.load_state_dict(new_state, strict=True)
    return pruned.to(next(model.parameters()).device).train(model.training)


def masked_copy(model: SSD, kept: Dict[str, List[int]]) -> SSD:
    """A copy of the model with every removed filter zeroed (BatchNorm too): the pruned model's outputs."""
    index, masked, rule = _index_lists(model, kept), copy.deepcopy(model), _rules(model.cfg.name)
    with torch.no_grad():
        for key, p in masked.named_parameters():
            out_layer, _ = rule(key)
            if out_layer is None:
                continue
            keep = torch.zeros(p.shape[0], dtype=torch.bool, device=p.device)
            keep[index[out_layer].to(p.device)] = True
            p[~keep] = 0
    return masked


def prune_model(model: SSD, compress_rate: Sequence[float], criterion: str = "hrank", rank_dir=None, seed: int = 0,
                round_to: Optional[int] = None) -> Tuple[SSD, Dict[str, List[int]]]:
    """Choose filters with ``criterion`` and rebuild: returns (pruned model, kept indices by layer)."""
    kept = kept_indices(model, compress_rate, criterion, rank_dir, seed, round_to)
    return apply_kept(model, kept), kept


def prune_to_widths(model: SSD, widths, criterion: str = "hrank", rank_dir=None,
                    seed: int = 0) -> Tuple[SSD, Dict[str, List[int]]]:
    """:func:`prune_model` to explicit kept counts (one per prunable layer, e.g. chosen under a budget)."""
    kept = kept_indices_for_widths(model, widths, criterion, rank_dir, seed)
    return apply_kept(model, kept), kept


def save_pruned(model: SSD, path, compress_rate: Optional[Sequence[float]], criterion: str,
                kept: Dict[str, List[int]], budget: Optional[dict] = None, made_by: Optional[List[str]] = None) -> None:
    """The pruned model as a plain state dict plus its sidecar (:func:`~hrank_ssd.nets.models.save_model`); without
    rates, the sidecar's widths are the kept filters' counts."""
    names = layer_names(model.cfg.name)
    rates = None if compress_rate is None else layer_rates(compress_rate, len(names))
    widths = {n: len(kept[n]) for n in names} if compress_rate is None else None
    save_model(model, path, compress_rate=rates, criterion=criterion, kept_indices=kept, widths=widths, budget=budget,
               made_by=made_by)


def describe_surgery(original: SSD, pruned: SSD) -> List[dict]:
    """Per parameter that changed shape: name, shape before, shape after (for the course's tables)."""
    before = original.state_dict()
    return [{"parameter": key, "before": list(before[key].shape), "after": list(t.shape)}
            for key, t in pruned.state_dict().items() if tuple(t.shape) != tuple(before[key].shape)]

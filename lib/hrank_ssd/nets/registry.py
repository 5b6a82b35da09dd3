"""The detectors the library knows, by ``--net`` name. Adding one: a net file with a ``SPEC``, and a line here."""

from __future__ import annotations

from typing import Dict, Tuple

from hrank_ssd.errors import HRankError
from hrank_ssd.nets import mb1_ssd, vgg16_ssd
from hrank_ssd.nets.spec import NetSpec

_NETS: Dict[str, NetSpec] = {}


def register(spec: NetSpec) -> NetSpec:
    """Make ``spec`` available to every command by its name (a test can register a toy net)."""
    _NETS[spec.name] = spec
    return spec


def get_net(name: str) -> NetSpec:
    """The net called ``name``, or a one-line error listing the known ones."""
    try:
        return _NETS[name]
    except KeyError:
        raise HRankError(f"unknown --net {name!r}: choose one of {', '.join(_NETS)}") from None


def net_names() -> Tuple[str, ...]:
    return tuple(_NETS)


def num_prunable(name: str) -> int:
    return get_net(name).num_prunable


register(vgg16_ssd.SPEC)
register(mb1_ssd.SPEC)

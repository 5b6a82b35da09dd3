"""A clock that runs on work, not on the machine: each Conv2d call advances ``time.perf_counter`` by
``speed * in_channels * out_channels / groups`` microseconds, nothing else does. Timing code then runs as in use,
and every time it measures is a pure function of the models (a test's path never depends on this machine).
A notebook kernel gets it from ``sim_kernel/sitecustomize.py`` with ``HRANK_SSD_CONV_CLOCK=1``."""

from __future__ import annotations

import contextlib
import time

import torch
from torch import nn


def install_conv_clock(speed=None):
    """Make ``time.perf_counter`` the conv clock; ``speed``: a one-item list to change its speed. Returns
    ``(clock, undo)``: ``clock[0]`` the time in seconds, ``undo()`` puts the real clock back."""
    clock, speed, real = [0.0], speed if speed is not None else [1.0], time.perf_counter

    def conv_cost(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            clock[0] += speed[0] * module.in_channels * module.out_channels / module.groups * 1e-6

    time.perf_counter = lambda: clock[0]
    handle = torch.nn.modules.module.register_module_forward_hook(conv_cost)

    def undo():
        handle.remove()
        time.perf_counter = real

    return clock, undo


@contextlib.contextmanager
def conv_clock(monkeypatch, speed=None):
    """Within the block (and the test, through ``monkeypatch``), ``time.perf_counter`` is the conv clock."""
    monkeypatch.setattr(time, "perf_counter", time.perf_counter)  # restored at teardown whatever happens
    clock, undo = install_conv_clock(speed)
    try:
        yield clock
    finally:
        undo()

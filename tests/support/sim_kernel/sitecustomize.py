"""With ``HRANK_SSD_SIMULATED_DEVICE=cuda|meta`` and this folder on ``PYTHONPATH``, a Python process (a notebook
kernel) starts inside :func:`support.sim_device.simulated_device`: the course's notebooks then run on the simulated
device (``tools/rehearse.py --device meta``), their CPU/device mix-ups raising as on a GPU. With
``HRANK_SSD_CONV_CLOCK=1`` its ``time.perf_counter`` is :mod:`support.fake_clock`'s conv clock."""

import os
import sys

_KIND = os.environ.get("HRANK_SSD_SIMULATED_DEVICE")
if _KIND:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    from support.sim_device import simulated_device

    _SIMULATION = simulated_device(_KIND)
    _SIMULATION.__enter__()  # for the whole process: the kernel runs its cells on this (main) thread

    import atexit

    atexit.register(_SIMULATION.__exit__, None, None, None)  # before the interpreter tears its modules down

if os.environ.get("HRANK_SSD_CONV_CLOCK"):  # time runs on the convs (support.fake_clock): same on any machine
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    from support.fake_clock import install_conv_clock

    install_conv_clock()

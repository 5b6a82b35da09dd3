"""A second torch device on a CPU-only machine, to catch CPU/GPU mix-ups without a GPU.

Inside :func:`simulated_device` every tensor created on (or moved to) the simulated device is a
:class:`SimTensor`: it reports that device (``cuda:0`` or ``meta``) while its data stays on the CPU, so the
library's arithmetic runs for real. Any op that meets a simulated tensor together with a CPU tensor that has a
dimension raises :class:`DeviceMix` ("Expected all tensors to be on the same device"), as torch does on a
GPU. What a real GPU allows stays allowed: 0-dim CPU tensors (scalars), CPU index tensors in advanced indexing
(``x[idx]``, ``x[mask] = v``), and copies between devices (``.to``, ``.cpu()``, ``copy_``).

Two kinds:

- ``"cuda"``: the tensors say ``cuda:0`` and ``torch.cuda.is_available()`` is True, so the library takes its
  GPU branches (synchronisation, ``device.type == "cuda"`` tests). Inference only: autograd would ask the CUDA
  runtime for a stream as soon as a graph is recorded, so nothing records gradients there (training fails with
  "does not require grad").
- ``"meta"``: the tensors say ``meta``; autograd and optimisers work, so training paths can run. The GPU-only
  branches (AMP, pinned memory) are not taken; ``tests/test_cuda.py`` and ``make gpu-check`` cover them on a GPU.
"""

from __future__ import annotations

import contextlib
import time
from typing import Iterator
from unittest import mock

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

aten = torch.ops.aten
_DEVICE = {"cuda": torch.device("cuda", 0), "meta": torch.device("meta")}
_CROSS_DEVICE = {aten.copy_.default, aten._to_copy.default, aten._copy_from.default,
                 aten._copy_from_and_resize.default}
_CPU_INDEX_OK = {aten.index.Tensor, aten.index_put_.default, aten.index_put.default, aten._index_put_impl_.default}


def _cudnn_batch_norm(x, weight, bias, mean, var, training, momentum, eps):
    out, save_mean, save_invstd = aten.native_batch_norm.default(x, weight, bias, mean, var, training, momentum, eps)
    return out, save_mean, save_invstd, x.new_empty(0, dtype=torch.uint8)


# torch picks cuDNN kernels for tensors that say "cuda" before they reach us: their CPU equivalents
_CPU_KERNEL = {aten.cudnn_batch_norm.default: _cudnn_batch_norm}


class DeviceMix(RuntimeError):
    """A simulated-device tensor met a CPU tensor in one op, where a GPU would have raised."""


class SimTensor(torch.Tensor):
    """A tensor that reports the simulated device; ``elem`` holds its data on the CPU."""

    elem: torch.Tensor
    device_kind: torch.device = _DEVICE["cuda"]
    records_grad: bool = False  # "meta" only: on "cuda" torch would ask the CUDA runtime for a stream

    @staticmethod
    def __new__(cls, elem: torch.Tensor):
        out = torch.Tensor._make_wrapper_subclass(cls, elem.size(), strides=elem.stride(),
                                                  storage_offset=elem.storage_offset(), dtype=elem.dtype,
                                                  layout=elem.layout, device=cls.device_kind,
                                                  requires_grad=elem.requires_grad and cls.records_grad)
        out.elem = elem
        return out

    def __repr__(self) -> str:
        return f"SimTensor(device={self.device}, {self.elem!r})"

    def requires_grad_(self, requires_grad: bool = True):
        """On the "cuda" kind nothing records gradients: training there fails in Python ("does not require
        grad") instead of aborting the process in the CUDA runtime."""
        return super().requires_grad_(requires_grad) if SimTensor.records_grad else self

    # Reading values copies them to the host, as on a GPU (torch would open a CUDA device guard first)
    def tolist(self):
        return self.elem.tolist()

    def item(self):
        return self.elem.item()

    def __int__(self):
        return int(self.elem)

    def __float__(self):
        return float(self.elem)

    def __bool__(self):
        return bool(self.elem)

    def __index__(self):
        return self.elem.__index__()

    def __format__(self, spec):
        return self.elem.__format__(spec)

    def __invert__(self):
        return torch.bitwise_not(self)

    def contiguous(self, memory_format=torch.contiguous_format):
        if self.device.type != "cuda" or self.elem.is_contiguous(memory_format=memory_format):
            return super().contiguous(memory_format=memory_format)
        return SimTensor(self.elem.contiguous(memory_format=memory_format))

    def new_tensor(self, data, dtype=None, device=None, requires_grad=False):
        device = self.device if device is None else device
        return torch.tensor(data, dtype=dtype or self.dtype, device="cpu").to(device)

    # Data-dependent shapes (nonzero, boolean masks) make torch open a CUDA device guard before any dispatch: on
    # the "cuda" kind they run here on the data (no autograd on that kind anyway); CPU indices are allowed, as on
    # a GPU; CPU values scattered by tensor indices are not.
    def nonzero(self, *args, **kwargs):
        if self.device.type != "cuda":
            return super().nonzero(*args, **kwargs)
        return SimTensor(self.elem.nonzero(*args, **kwargs))

    def __getitem__(self, index):
        if self.device.type != "cuda":
            return super().__getitem__(index)
        return SimTensor(self.elem[_host_index(index)])

    def __setitem__(self, index, value):
        if self.device.type != "cuda":
            return super().__setitem__(index, value)
        if _dense_cpu(value) and _has_tensor(index):
            raise DeviceMix("Expected all tensors to be on the same device: CPU values put into a "
                            f"{self.device} tensor at tensor indices")
        self.elem[_host_index(index)] = value.elem if isinstance(value, SimTensor) else value

    def __reduce_ex__(self, protocol):  # saved as its data, as torch.load(map_location="cpu") reads a GPU tensor
        return self.elem.__reduce_ex__(protocol)

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        return _run(func, args, kwargs or {})


def _host_index(index):
    if isinstance(index, tuple):
        return tuple(_host_index(i) for i in index)
    return index.elem if isinstance(index, SimTensor) else index


def _has_tensor(index) -> bool:
    return any(isinstance(i, torch.Tensor) for i in (index if isinstance(index, tuple) else (index,)))


def _on_sim(device) -> bool:
    return device is not None and torch.device(device).type == SimTensor.device_kind.type


def _dense_cpu(a) -> bool:
    return isinstance(a, torch.Tensor) and a.device.type == "cpu" and a.dim() > 0


def _check(func, args, kwargs, sims) -> None:
    if not sims or func in _CROSS_DEVICE:
        return
    if func in _CPU_INDEX_OK:  # a GPU moves CPU indices itself; only the indexed tensor must match
        cpu = [a for a in args[:1] if _dense_cpu(a)] + ([args[2]] if len(args) > 2 and _dense_cpu(args[2]) else [])
    else:
        cpu = [a for a in tree_flatten((args, kwargs))[0] if _dense_cpu(a)]
    if cpu:
        raise DeviceMix(f"Expected all tensors to be on the same device, but found at least two devices, "
                        f"{SimTensor.device_kind} and cpu! ({func}: CPU tensor of shape {tuple(cpu[0].shape)})")


def _run(func, args, kwargs):
    """Run ``func`` on the CPU data of its simulated arguments; its results live where a GPU would put them."""
    sims = [a for a in tree_flatten((args, kwargs))[0] if isinstance(a, SimTensor)]
    _check(func, args, kwargs, sims)
    if func is aten._pin_memory.default:
        return args[0]
    if func is aten.is_pinned.default:
        return False
    target = kwargs.get("device")
    to_sim, to_cpu = _on_sim(target), target is not None and torch.device(target).type == "cpu"
    unwrapped_kwargs = {k: (torch.device("cpu") if k == "device" and to_sim else v) for k, v in kwargs.items()}
    if unwrapped_kwargs.get("pin_memory"):
        unwrapped_kwargs["pin_memory"] = False
    unwrap = lambda a: a.elem if isinstance(a, SimTensor) else a  # noqa: E731
    out = _CPU_KERNEL.get(func, func)(*tree_map(unwrap, args), **tree_map(unwrap, unwrapped_kwargs))
    schema = func._schema
    if schema.name.endswith("_") or any(a.is_out for a in schema.arguments):  # in place or out=: same object back
        if args and isinstance(args[0], SimTensor):
            return args[0]
        if isinstance(kwargs.get("out"), SimTensor):
            return kwargs["out"]
    if not ((sims and not to_cpu) or to_sim):
        return out
    return tree_map(lambda t: SimTensor(t) if isinstance(t, torch.Tensor) and not isinstance(t, SimTensor) else t, out)


class _Factories(TorchDispatchMode):
    """Tensors made with ``device=<simulated>`` (factories, ``.to`` of a CPU tensor) become :class:`SimTensor`."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if _on_sim(kwargs.get("device")) or any(isinstance(a, SimTensor) for a in tree_flatten((args, kwargs))[0]):
            return _run(func, args, kwargs)
        return func(*args, **kwargs)


def _with_index(value):
    """``"cuda"`` -> ``cuda:0``: torch asks the CUDA runtime for the current device of an index-less name."""
    if isinstance(value, str) and value == "cuda":
        return torch.device("cuda", 0)
    if isinstance(value, torch.device) and value.type == "cuda" and value.index is None:
        return torch.device("cuda", 0)
    return value


_FROM_DATA = {torch.tensor, torch.as_tensor, torch.asarray}


class _DeviceNames(TorchFunctionMode):
    """Before torch sees a device: ``cuda`` gets its index, and tensors built from Python data or numpy for the
    simulated device are built on the CPU and moved (torch copies such data below any dispatch mode)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.device:
            return func(*args, **kwargs)
        args = tuple(_with_index(a) for a in args)
        kwargs = {k: _with_index(v) for k, v in kwargs.items()}
        if func in _FROM_DATA and _on_sim(kwargs.get("device")):
            return func(*args, **{**kwargs, "device": "cpu"}).to(kwargs["device"])
        return func(*args, **kwargs)


class _Event:
    """``torch.cuda.Event`` on the CPU clock (timings only have to be positive and ordered here)."""

    def __init__(self, enable_timing: bool = False, **_):
        self.t = None

    def record(self, stream=None) -> None:
        self.t = time.perf_counter()

    def synchronize(self) -> None:
        pass

    def elapsed_time(self, end: _Event) -> float:
        return (end.t - self.t) * 1000.0


class _MetaAutocast(torch.autocast):
    """``torch.autocast("meta", enabled=False)`` as a no-op (torch refuses the device type even when disabled)."""

    def __init__(self, device_type: str, *args, **kwargs):
        super().__init__("cpu" if device_type == "meta" else device_type, *args, **kwargs)


class _NoGradInference(torch.no_grad):
    """``torch.inference_mode`` as ``no_grad``: torch cannot version-count wrapper tensors made in inference mode."""

    def __init__(self, mode: bool = True):
        super().__init__()
        self.mode = mode

    def __enter__(self):
        if self.mode:
            super().__enter__()

    def __exit__(self, *exc):
        if self.mode:
            super().__exit__(*exc)


def _cuda_patches():
    props = mock.Mock(name="simulated CUDA device", total_memory=16 << 30, multi_processor_count=40)
    props.name = "simulated CUDA device (CPU)"
    return [mock.patch("torch.cuda.is_available", lambda: True),
            mock.patch("torch.cuda.device_count", lambda: 1),
            mock.patch("torch.cuda.current_device", lambda: 0),
            mock.patch("torch.cuda._lazy_init", lambda: None),
            mock.patch("torch.cuda.synchronize", lambda *a, **k: None),
            mock.patch("torch.cuda.empty_cache", lambda: None),
            mock.patch("torch.cuda.get_device_name", lambda *a, **k: props.name),
            mock.patch("torch.cuda.get_device_properties", lambda *a, **k: props),
            mock.patch("torch.cuda.get_device_capability", lambda *a, **k: (8, 0)),
            mock.patch("torch.cuda.memory_allocated", lambda *a, **k: 0),
            mock.patch("torch.cuda.max_memory_allocated", lambda *a, **k: 0),
            mock.patch("torch.cuda.reset_peak_memory_stats", lambda *a, **k: None),
            mock.patch("torch.cuda.Event", _Event)]


@contextlib.contextmanager
def simulated_device(kind: str = "cuda") -> Iterator[torch.device]:
    """Inside, ``kind`` ("cuda" or "meta") is a working device whose tensors compute on the CPU and refuse to
    meet CPU tensors; yields the device to hand to the library."""
    if kind not in _DEVICE:
        raise ValueError(f"kind must be one of {sorted(_DEVICE)}")
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(SimTensor, "device_kind", _DEVICE[kind]))
        stack.enter_context(mock.patch.object(SimTensor, "records_grad", kind == "meta"))
        # Module.to(): swap each parameter for its SimTensor (the default would graft the new data onto the old
        # Python object, which then reports the device without dispatching here)
        swap = torch.__future__.get_swap_module_params_on_conversion()
        torch.__future__.set_swap_module_params_on_conversion(True)
        stack.callback(torch.__future__.set_swap_module_params_on_conversion, swap)
        stack.enter_context(mock.patch("torch.inference_mode", _NoGradInference))
        if kind == "meta":
            stack.enter_context(mock.patch("torch.autocast", _MetaAutocast))
        if kind == "cuda":
            for patch in _cuda_patches():
                stack.enter_context(patch)
        stack.enter_context(_Factories())
        stack.enter_context(_DeviceNames())
        yield _DEVICE[kind]


def devices_of(model: torch.nn.Module) -> set:
    """The device types of a module's parameters and buffers."""
    return {t.device.type for t in [*model.parameters(), *model.buffers()]}


__all__ = ["DeviceMix", "SimTensor", "devices_of", "simulated_device"]

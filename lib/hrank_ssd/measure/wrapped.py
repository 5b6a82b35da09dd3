"""Models wrapped for inference (fp16 autocast, channels_last...) keep the facts of the SSD inside."""

from __future__ import annotations

from torch import nn

from hrank_ssd.nets.ssd import SSD

SSD_FACTS = ("cfg", "image_size", "num_classes", "plan")  # what Predictor, bench and flops read off a model


def unwrap(model):
    """The SSD inside wrappers (:class:`Wrapped` ones, ``torch.compile``'s, an onnxruntime model's)."""
    while not isinstance(model, SSD):
        if hasattr(model, "_orig_mod"):  # torch.compile
            model = model._orig_mod
        elif hasattr(model, "model"):  # Wrapped, an onnxruntime model
            model = model.model
        else:
            break
    return model


def take_facts(wrapper, model):
    """Copy :data:`SSD_FACTS` of the SSD inside ``model`` onto ``wrapper``; return that SSD."""
    inner = unwrap(model)
    for name in SSD_FACTS:
        setattr(wrapper, name, getattr(inner, name))
    return inner


class Wrapped(nn.Module):
    """Base of the inference wrappers: forwards the SSD's attributes (``cfg``, ``priors``...)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        inner = take_facts(self, model)
        self.register_buffer("priors", inner.priors.clone(), persistent=False)

    def forward(self, x):
        return self.model(x)

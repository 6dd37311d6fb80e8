"""Backbones: the registry and its contract, the built-in video ViT, Meta's V-JEPA 2, LoRA.

Importing this package imports every module in it, so each `@register_backbone` entry defined
here (including one in a file you add to this folder) is registered before any config names it.
"""

import importlib
import pkgutil

from tritemporal.adapters.registry import (
    Backbone,
    Encoder,
    Predictor,
    create_backbone,
    list_backbones,
    register_backbone,
)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "Backbone",
    "Encoder",
    "Predictor",
    "create_backbone",
    "list_backbones",
    "register_backbone",
]

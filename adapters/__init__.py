"""Backbones: the registry, the built-in video ViT and the shared token/position code."""

from tritemporal.adapters.registry import (
    Backbone,
    create_backbone,
    list_backbones,
    register_backbone,
)

__all__ = ["Backbone", "create_backbone", "list_backbones", "register_backbone"]

"""Objectives: masks, losses and one module per objective (spatial, SOON, EVENTUALLY)."""

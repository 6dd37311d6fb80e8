"""Objectives: masks, losses, one module per objective (spatial, SOON, EVENTUALLY, supervised)
and the variance-covariance regulariser."""

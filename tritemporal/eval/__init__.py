"""Evaluation toolkit: classification metrics, feature-collapse statistics, CV probes and plots."""

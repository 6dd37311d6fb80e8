"""Heads: the masked predictor, the OutcomeAbstractor (EVENTUALLY) and attentive pooling."""

"""Data sources (registered by `data.source`) and the step-keyed loader."""

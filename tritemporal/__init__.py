"""tritemporal: tri-temporal (NOW, SOON, EVENTUALLY) V-JEPA training for driving video."""

from importlib.metadata import version

from tritemporal.config import TriTemporalConfig, load_config
from tritemporal.model import TriTemporalModel

__all__ = ["TriTemporalConfig", "TriTemporalModel", "load_config"]
__version__ = version("tritemporal")  # pyproject.toml's, the one place it is written

"""Dataset importers (`tritemporal import FORMAT SRC --out DIR`): one module per format, each
registered in `base.IMPORTERS` on import."""

from tritemporal.data.importers import base, bdd100k, comma2k19, frames  # noqa: F401

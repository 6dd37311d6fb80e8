"""A linear outcome probe on EVENTUALLY embeddings: standardise, then one linear layer.

`tritemporal eval` fits it on every labelled window (the same class-balanced logistic regression
its cross-validated probe scores) and saves it beside `report.json`; `tritemporal predict --probe`
loads it to turn per-window embeddings into outcome probabilities. It lives here, below both
drivers, so neither has to import the other.

Files, in one folder (the eval output folder):
- `PROBE_WEIGHTS` (safetensors, float32): `mean` (E,) and `scale` (E,), the feature
  standardisation; `weight` (C, E) and `bias` (C,), class logits of standardised features.
- `PROBE_CONFIG` (JSON): `format` (`PROBE_FORMAT`), `features` ("eventually"), `embed_dim` (E),
  `label_names` (C class names, in logit order), `fitted_on` (number of windows),
  `model_fingerprint` (`TriTemporalModel.outcome_fingerprint` of the model whose embeddings it
  was fitted on; null when unknown, absent in files written before it was recorded).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from tritemporal.files import atomic_path, write_text

PROBE_WEIGHTS = "eventually_probe.safetensors"
PROBE_CONFIG = "eventually_probe.json"
PROBE_FORMAT = 1
_TENSORS = ("mean", "scale", "weight", "bias")

logger = logging.getLogger(__name__)


def read_probe_folder(
    folder: Path, weights: str, config: str, fmt: int, what: str, remedy: str
) -> tuple[dict, dict[str, torch.Tensor]]:
    """The JSON config and the tensors of a probe saved in `folder` as files `weights` and
    `config`, checked to be there, readable and of format `fmt` with a probe's four tensors.
    Errors name the folder and `what` it should hold; `remedy` says how to write one."""
    missing = [n for n in (weights, config) if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(
            f"no {what} in {folder} ({' and '.join(missing)} missing): {remedy}"
        )
    try:
        meta = json.loads((folder / config).read_text())
        tensors = load_file(folder / weights)
    except (json.JSONDecodeError, SafetensorError, OSError) as exc:
        raise ValueError(f"{what} files in {folder} are damaged ({exc}): {remedy}") from exc
    if meta.get("format") != fmt or set(tensors) != set(_TENSORS):
        raise ValueError(
            f"{folder / config} is not a format-{fmt} {what} (format {meta.get('format')!r}, "
            f"tensors {sorted(tensors)}): {remedy}"
        )
    return meta, tensors


def write_probe_folder(
    folder: Path, weights: str, config: str, probe: LinearProbe, meta: dict
) -> Path:
    """Write `probe`'s four tensors to `folder / weights` (safetensors, atomically) and `meta`
    to `folder / config` (JSON), the files `read_probe_folder` reads; returns the weights' path."""
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / weights) as tmp:
        save_file({name: getattr(probe, name).cpu() for name in _TENSORS}, tmp)
    write_text(folder / config, json.dumps(meta, indent=1) + "\n")
    return folder / weights


class LinearProbe(nn.Module):
    """Class logits (N, C) of EVENTUALLY embeddings x (N, E): W ((x - mean) / scale) + b."""

    mean: torch.Tensor
    scale: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor

    def __init__(
        self,
        mean: torch.Tensor,
        scale: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor,
        label_names: list[str],
        fitted_on: int = 0,
        fingerprint: str | None = None,
    ) -> None:
        super().__init__()
        c, e = weight.shape
        if mean.shape != (e,) or scale.shape != (e,) or bias.shape != (c,):
            raise ValueError(
                f"probe tensors disagree: weight {tuple(weight.shape)}, bias {tuple(bias.shape)}, "
                f"mean {tuple(mean.shape)}, scale {tuple(scale.shape)} (expected (C, E), (C,), "
                "(E,), (E,))"
            )
        if len(label_names) != c:
            raise ValueError(f"probe has {c} classes but {len(label_names)} label names")
        for name, value in zip(_TENSORS, (mean, scale, weight, bias), strict=True):
            self.register_buffer(name, value.detach().float().contiguous())
        self.label_names = [str(n) for n in label_names]
        self.fitted_on = int(fitted_on)
        self.fingerprint = fingerprint  # outcome_fingerprint of the model it was fitted on

    @property
    def embed_dim(self) -> int:
        """Size E of the embeddings the probe takes."""
        return self.weight.shape[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (N, C) of embeddings x (N, E)."""
        return F.linear((x.float() - self.mean) / self.scale, self.weight, self.bias)

    def save(self, folder: str | Path) -> Path:
        """Write PROBE_WEIGHTS and PROBE_CONFIG into `folder`; returns the weights' path."""
        config = {
            "format": PROBE_FORMAT,
            "features": "eventually",
            "embed_dim": self.embed_dim,
            "label_names": self.label_names,
            "fitted_on": self.fitted_on,
            "model_fingerprint": self.fingerprint,
        }
        return write_probe_folder(Path(folder), PROBE_WEIGHTS, PROBE_CONFIG, self, config)

    @classmethod
    def load(cls, path: str | Path) -> LinearProbe:
        """The probe saved in folder `path` (or by its PROBE_WEIGHTS / PROBE_CONFIG file)."""
        path = Path(path)
        folder = path.parent if path.name in (PROBE_WEIGHTS, PROBE_CONFIG) else path
        config, tensors = read_probe_folder(
            folder, PROBE_WEIGHTS, PROBE_CONFIG, PROBE_FORMAT, "EVENTUALLY probe",
            f"`tritemporal eval --checkpoint RUN --data CLIPS --out {folder}` fits and writes one",
        )  # fmt: skip
        fingerprint = config.get("model_fingerprint")
        if fingerprint is None:
            logger.warning(
                "%s records no model fingerprint (older files have none): nothing can check that "
                "it was fitted on the model it is used with; `tritemporal eval --checkpoint "
                "SOURCE --data CLIPS --out %s` refits it with one",
                folder / PROBE_CONFIG, folder,
            )  # fmt: skip
        probe = cls(
            **tensors, label_names=config["label_names"], fitted_on=config["fitted_on"],
            fingerprint=fingerprint,
        )  # fmt: skip
        if probe.embed_dim != config["embed_dim"]:
            raise ValueError(
                f"{folder / PROBE_CONFIG} says embed_dim {config['embed_dim']} but its weights "
                f"take {probe.embed_dim}: re-run eval"
            )
        return probe

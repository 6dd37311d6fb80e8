"""The saved-model folder: what `TriTemporalModel.save_pretrained` writes and `from_pretrained`
reads, and where a source (folder, Hub id, run directory, checkpoint) points.

`TriTemporalModel` inherits huggingface_hub's `ModelHubMixin`, which owns the Hub conventions
(download with `revision` / `force_download` / cache, `push_to_hub` as one commit, the model
card file); its `_save_pretrained` / `_from_pretrained` call the functions here. This module
works on any `nn.Module` with the model's attribute names and never imports the model class,
so the model can build on it.

A saved model folder (huggingface_hub's layout; the config is nested and the base weights of a
LoRA model are referenced by Hub id rather than copied):
  config.json          {"tritemporal_version", "config": TriTemporalConfig, "base_model":
                        {"id", "revision"} or null, "weights": "full" | "trainable"}
  model.safetensors    the student and heads: everything trainable (all weights when the base
                       is not a pretrained Hub model or was fully fine-tuned); no EMA teacher
  adapter/             LoRA in peft's own format (adapter_config.json, adapter_model.safetensors),
                       keys relative to transformers' VJEPA2Model, so peft loads it on the base
  README.md            the model card
A run directory or one of its checkpoints (`checkpoint.py`'s format) loads the same model, with
its config taken from the checkpoint.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import torch
from huggingface_hub import constants, get_token, snapshot_download
from huggingface_hub.utils import HFValidationError, validate_repo_id
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from tritemporal.adapters.lora import peft_lora_config
from tritemporal.adapters.shipped import shipped_models
from tritemporal.adapters.vjepa2 import HUB_IDS, pretrained_source
from tritemporal.checkpoint import MODEL_FILE, STATE_FILE, resolve_checkpoint
from tritemporal.config import TriTemporalConfig
from tritemporal.files import atomic_path, set_default_mode, write_text
from tritemporal.model_card import render_model_card

HUB_CONFIG = constants.CONFIG_NAME  # config.json
HUB_WEIGHTS = MODEL_FILE  # the same file name as in a training checkpoint
ADAPTER_DIR = "adapter"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
MODEL_CARD = "README.md"
SOURCES = (
    "a model source is a saved model folder, a run directory, a checkpoint folder, a shipped "
    "model's name or a Hub repo id (OWNER/NAME)"
)


@dataclass(frozen=True)
class Located:
    """Where a model source points: a saved-model folder or a training checkpoint, and the
    config its files record."""

    path: Path
    config: TriTemporalConfig
    is_checkpoint: bool


def locate(
    source: str | Path,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    force_download: bool = False,
    token: str | bool | None = None,
    local_files_only: bool = False,
) -> Located:
    """A saved folder, a run dir / checkpoint folder (local), a shipped model's registry key
    (`adapters.shipped`: a saved folder inside the package), or a Hub repo id (downloaded).

    Which one, from the source's text (`~` expanded), in this order: an existing path is local
    (a folder, else an error); a shipped key is the shipped folder; `is_hub_id` text is
    downloaded; anything else is a local folder that does not exist: a `FileNotFoundError`
    naming it and the close names in its nearest existing parent folder.
    """
    path = Path(os.path.expanduser(source))
    if not path.exists():
        path = shipped_models().get(str(source), path)
    if path.is_dir() and (path / HUB_CONFIG).is_file():
        check_model_folder(path)
        return Located(path, read_folder_config(path), is_checkpoint=False)
    if path.is_dir():
        checkpoint = resolve_checkpoint(path)  # clear errors for damaged or missing checkpoints
        state = json.loads((checkpoint / STATE_FILE).read_text())
        config = TriTemporalConfig.from_dict(state["config"], source=str(checkpoint / STATE_FILE))
        return Located(checkpoint, config, is_checkpoint=True)
    if path.exists():
        raise FileNotFoundError(f"{source} is not a folder: {SOURCES}")
    if not is_hub_id(source):
        raise FileNotFoundError(missing_folder_message(str(source)))
    folder = Path(
        snapshot_download(
            str(source),
            revision=revision,
            cache_dir=cache_dir,
            force_download=force_download,
            token=token,
            local_files_only=local_files_only,
        )
    )
    check_model_folder(folder)
    return Located(folder, read_folder_config(folder), is_checkpoint=False)


def is_hub_id(source: str | Path) -> bool:
    """Whether `locate` reads a source it finds neither on disk nor among the shipped keys as
    a Hub repo id: OWNER/NAME (exactly one `/`, no leading `.`, `~` or `/`, no `\\`, characters
    the Hub allows) whose OWNER is not a folder here (then `runs/quickstrat` is a missing run)."""
    return _hub_id_shaped(str(source)) and not Path(str(source).split("/")[0]).is_dir()


def _hub_id_shaped(text: str) -> bool:
    """Whether `text` is spelt like a Hub repo id, OWNER/NAME (whatever exists on disk)."""
    if text.count("/") != 1 or text.startswith((".", "~", "/")) or "\\" in text:
        return False
    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return True


def missing_folder_message(source: str) -> str:
    """One line: `source` does not exist, the close names in its nearest existing parent folder
    (difflib's close matches; shipped keys too for a bare name) and what a source may be."""
    path = Path(os.path.expanduser(source))
    parent = next((p for p in path.parents if p.exists()), Path("."))
    missing = path.parts[len(parent.parts)]  # the first part that does not exist
    where = "the current folder" if parent == Path(".") else os.path.join(parent, "")
    try:
        names = [n for n in os.listdir(parent) if not n.startswith(".")]
    except OSError:  # a file, or a folder that may not be listed
        names = []
    close = [str(parent / n) for n in difflib.get_close_matches(missing, names, n=5)]
    if len(path.parts) == 1:  # a bare name may be a misspelt shipped model
        shipped = difflib.get_close_matches(missing, list(shipped_models()), n=3)
        close += [f"{n} (shipped)" for n in shipped]
    found = f"close names: {', '.join(close)}" if close else "no close names"
    hub = ""
    if _hub_id_shaped(source):  # OWNER/NAME, but folder OWNER exists here
        hub = f"; read as a path, not a Hub repo id, because {where} exists here"
    return f"folder {source} does not exist ({where} has no {missing}; {found}){hub}; {SOURCES}"


def read_folder_config(folder: Path) -> TriTemporalConfig:
    """The config recorded in a saved model folder's config.json."""
    meta = json.loads((folder / HUB_CONFIG).read_text())
    if "config" not in meta:
        raise ValueError(
            f"{folder / HUB_CONFIG} has no 'config' entry: it was not written by "
            "TriTemporalModel.save_pretrained"
        )
    return TriTemporalConfig.from_dict(meta["config"], source=str(folder / HUB_CONFIG))


def check_model_folder(folder: Path) -> None:
    """Clear error unless `folder` holds a complete saved model."""
    missing = [name for name in (HUB_CONFIG, HUB_WEIGHTS) if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{folder} is not a complete tritemporal model folder: missing {missing}; create one "
            "with TriTemporalModel.save_pretrained, or point at a run directory"
        )


def base_model(config: TriTemporalConfig) -> dict | None:
    """The pretrained base a model builds on (Hub id + revision), or None for built-in ViTs."""
    b = config.backbone
    if b.name != "vjepa2" and b.name not in HUB_IDS:
        return None
    source, revision = pretrained_source(b)
    return {"id": source, "revision": revision}


def folder_meta(config: TriTemporalConfig) -> dict:
    """The config.json of a saved model: version, config, base model, which weights it holds."""
    base = base_model(config)
    lora = config.backbone.lora.r > 0
    return {
        "tritemporal_version": version("tritemporal"),
        "config": config.to_dict(),
        "base_model": base,
        "shipped_base": config.backbone.name if config.backbone.name in shipped_models() else None,
        "weights": "trainable" if base is not None and lora else "full",
    }


def model_card(config: TriTemporalConfig, extras: dict | None = None) -> str:
    """The README.md of a saved model (extras: `step`, `data`, evaluation lines)."""
    return render_model_card(folder_meta(config), extras or {})


def write_model_folder(model: nn.Module, config: TriTemporalConfig, out: Path) -> None:
    """Write config.json, model.safetensors and (with LoRA) adapter/ for `model` into `out`."""
    meta = folder_meta(config)
    with atomic_path(out / HUB_WEIGHTS) as tmp:
        save_file(_student_state(model, meta["weights"] == "trainable"), tmp)
    if config.backbone.lora.r > 0:
        state, adapter_config = _adapter_state(model, config)
        (out / ADAPTER_DIR).mkdir(exist_ok=True)
        with atomic_path(out / ADAPTER_DIR / ADAPTER_WEIGHTS) as tmp:
            save_file(state, tmp)
        text = json.dumps(adapter_config, indent=1, default=list)
        write_text(out / ADAPTER_DIR / ADAPTER_CONFIG, text)
    write_text(out / HUB_CONFIG, json.dumps(meta, indent=1))


def _student_state(model: nn.Module, trainable_only: bool) -> dict[str, torch.Tensor]:
    """Student + heads tensors (never the teacher, never LoRA: that goes to adapter/)."""
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    state = {}
    for name, tensor in model.state_dict().items():
        if name.startswith("teacher.") or ".lora_" in name:
            continue
        if trainable_only and name not in trainable:
            continue
        state[name] = tensor.detach().contiguous().clone()
    return state


def _adapter_state(
    model: nn.Module, config: TriTemporalConfig
) -> tuple[dict[str, torch.Tensor], dict]:
    """LoRA weights keyed like peft's PeftModel around VJEPA2Model, and peft's adapter config."""
    from peft import get_peft_model_state_dict  # peft and transformers take seconds to import

    lora = config.backbone.lora
    state = {}
    for part in lora.apply_to:
        module = getattr(model.backbone, part)
        for key, value in get_peft_model_state_dict(module).items():
            inner = key.removeprefix("hf.")
            state[f"base_model.model.{part}.{inner}"] = value.contiguous().clone()
    targets, pattern = model.backbone.lora_targets[lora.apply_to[0]]
    peft_config = peft_lora_config(lora, targets, pattern)
    base = base_model(config)
    peft_config.base_model_name_or_path = base["id"] if base else None
    peft_config.revision = base["revision"] if base else None
    return state, peft_config.to_dict()


def read_folder_weights(model: nn.Module, folder: Path) -> dict[str, torch.Tensor]:
    """The saved tensors of `folder`, keyed like `model`'s state dict; clear errors when a file
    is damaged or the weights do not fit the model its config builds."""
    state = _load(folder / HUB_WEIGHTS)
    if (folder / ADAPTER_DIR).is_dir():
        state.update(_adapter_to_model_keys(model, _load(folder / ADAPTER_DIR / ADAPTER_WEIGHTS)))
    own = model.state_dict()
    unexpected = sorted(set(state) - set(own))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    missing = sorted(trainable - set(state))
    if unexpected or missing:
        raise ValueError(
            f"{folder}: weights do not fit the model its config builds (unexpected "
            f"{unexpected[:5]}, missing {missing[:5]})"
        )
    return state


def read_checkpoint_weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The full model state dict of a training checkpoint (teacher included)."""
    return _load(checkpoint / MODEL_FILE)


def _load(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors, or an error naming the damaged file."""
    try:
        return load_file(path)
    except (SafetensorError, OSError) as exc:
        raise ValueError(
            f"{path} is damaged or unreadable ({exc}); save or download the model again"
        ) from exc


def _adapter_to_model_keys(model: nn.Module, state: dict) -> dict[str, torch.Tensor]:
    """peft adapter keys (around VJEPA2Model or our backbone) -> this model's parameter names."""
    own = set(model.state_dict())
    out = {}
    for key, value in state.items():
        part, _, inner = key.removeprefix("base_model.model.").partition(".")
        inner = inner.replace(".lora_A.weight", ".lora_A.default.weight")
        inner = inner.replace(".lora_B.weight", ".lora_B.default.weight")
        for name in (f"backbone.{part}.hf.{inner}", f"backbone.{part}.{inner}"):
            if name in own:
                out[name] = value
                break
        else:
            out[key] = value  # reported as unexpected by the caller
    return out


def run_card_extras(checkpoint: Path) -> dict:
    """Model-card facts from a training run: its step and the data summary it wrote."""
    extras = {"step": json.loads((checkpoint / STATE_FILE).read_text())["step"]}
    summary = checkpoint.parent.parent / "data_summary.json"  # run_dir/checkpoints/step_X
    if summary.is_file():
        data = json.loads(summary.read_text())
        labels = ", ".join(f"{k} {v}" for k, v in data.get("label_counts", {}).items() if v)
        extras["data"] = (
            f"{data.get('videos_used')} videos, {data.get('samples')} windows ({labels})"
        )
    return extras


def check_push_target(repo_id: str, token: str | None) -> str:
    """Validate a USER/NAME repo id and find a token before anything is written; returns it."""
    try:
        validate_repo_id(repo_id)
        if repo_id.count("/") != 1:
            raise HFValidationError("expected exactly one '/'")
    except HFValidationError as exc:
        raise ValueError(f"--repo-id {repo_id!r} is not USER/NAME or ORG/NAME: {exc}") from exc
    token = token or get_token()
    if not token:
        raise ValueError(
            "no Hugging Face token: run `hf auth login` or set HF_TOKEN (write access needed)"
        )
    return token


def merge_to_transformers(model: nn.Module, config: TriTemporalConfig, out_dir: str | Path) -> Path:
    """Fold LoRA into the base and write encoder + predictor as a transformers VJEPA2Model."""
    from transformers import VJEPA2Model  # seconds to import: only when merging

    if base_model(config) is None:
        raise ValueError(
            f"the model uses the built-in {config.backbone.name!r} ViT; merge writes "
            "transformers' V-JEPA 2 format, so it needs a vjepa2* backbone"
        )
    merged = {}
    for part in ("encoder", "predictor"):
        module = getattr(model.backbone, part)
        for layer in module.modules():
            if hasattr(layer, "merge") and hasattr(layer, "lora_A"):
                layer.merge()
        for key, value in module.state_dict().items():
            if ".lora_" in key:
                continue
            merged[f"{part}.{key.removeprefix('hf.').replace('.base_layer', '')}"] = value
    hf = VJEPA2Model(model.backbone.encoder.hf_config)
    result = hf.load_state_dict(merged, strict=True)
    assert not result.missing_keys and not result.unexpected_keys, result
    out = Path(out_dir)
    hf.save_pretrained(out)
    for weights in out.glob("*.safetensors"):  # transformers writes them 0600
        set_default_mode(weights)
    stats = {
        "image_mean": list(model.backbone.pixel_mean),
        "image_std": list(model.backbone.pixel_std),
    }
    write_text(out / "video_preprocessor_config.json", json.dumps(stats, indent=1))
    return out

"""Loading trained models for use: from a run, a checkpoint, or a saved/pushed model folder."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tritemporal.checkpoint import STATE_FILE, find_last_checkpoint, load_checkpoint
from tritemporal.config import TriTemporalConfig
from tritemporal.model import TriTemporalModel


def resolve_checkpoint(path: str | Path) -> Path:
    """A run dir -> its last checkpoint; a checkpoint dir -> itself (clear error otherwise)."""
    path = Path(path)
    if (path / STATE_FILE).is_file():
        return path
    last = find_last_checkpoint(path) if path.is_dir() else None
    if last is None:
        raise FileNotFoundError(
            f"{path} is neither a run directory with checkpoints/ nor a checkpoint folder "
            f"holding {STATE_FILE}"
        )
    return last


def load_model(path: str | Path, device: str | torch.device = "cpu") -> TriTemporalModel:
    """The model of a run dir or checkpoint dir, in eval mode on `device`."""
    checkpoint = resolve_checkpoint(path)
    state = json.loads((checkpoint / STATE_FILE).read_text())
    config = TriTemporalConfig.from_dict(state["config"], source=str(checkpoint / STATE_FILE))
    model = TriTemporalModel(config)
    load_checkpoint(checkpoint, model, restore_rng=False)
    return model.to(device).eval()


# ---------------------------------------------------------------------------------------------
# Hub-ready folders: save_pretrained / from_pretrained / push_to_hub
#
# A saved model folder (huggingface_hub's ModelHubMixin layout, written by hand because the
# config is nested and the base weights are referenced rather than copied):
#   config.json          {"tritemporal_version", "config": TriTemporalConfig, "base_model":
#                         {"id", "revision"} or null, "weights": "full" | "trainable"}
#   model.safetensors    the student and heads: everything trainable (all weights when the base
#                        is not a pretrained Hub model or was fully fine-tuned); no EMA teacher
#   adapter/             LoRA in peft's own format (adapter_config.json, adapter_model.safetensors),
#                        keys relative to transformers' VJEPA2Model, so peft loads it on the base
#   README.md            the model card
# ---------------------------------------------------------------------------------------------

HUB_CONFIG = "config.json"
HUB_WEIGHTS = "model.safetensors"
ADAPTER_DIR = "adapter"
MODEL_CARD = "README.md"


def _base_model(config: TriTemporalConfig) -> dict | None:
    """The pretrained base a model builds on (Hub id + revision), or None for built-in ViTs."""
    from tritemporal.adapters.vjepa2 import HUB_IDS, pretrained_source

    b = config.backbone
    if b.name != "vjepa2" and b.name not in HUB_IDS:
        return None
    source, revision = pretrained_source(b)
    return {"id": source, "revision": revision}


def _student_state(model: TriTemporalModel, trainable_only: bool) -> dict[str, torch.Tensor]:
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


def _adapter_state(model: TriTemporalModel) -> tuple[dict[str, torch.Tensor], dict]:
    """LoRA weights keyed like peft's PeftModel around VJEPA2Model, and peft's adapter config."""
    from peft import get_peft_model_state_dict

    from tritemporal.adapters.lora import peft_lora_config

    lora = model.config.backbone.lora
    state, modules = {}, set()
    for part in lora.apply_to:
        module = getattr(model.backbone, part)
        for key, value in get_peft_model_state_dict(module).items():
            inner = key.removeprefix("hf.")
            state[f"base_model.model.{part}.{inner}"] = value.contiguous().clone()
        modules.update(model.backbone.lora_targets[part][0])
    targets, pattern = model.backbone.lora_targets[lora.apply_to[0]]
    peft_config = peft_lora_config(lora, targets, pattern)
    base = _base_model(model.config)
    peft_config.base_model_name_or_path = base["id"] if base else None
    peft_config.revision = base["revision"] if base else None
    return state, peft_config.to_dict()


def save_pretrained(
    model: TriTemporalModel, out_dir: str | Path, card_extras: dict | None = None
) -> Path:
    """Write a Hub-ready folder (config, weights, LoRA adapter, model card); returns it."""
    from safetensors.torch import save_file

    import tritemporal

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config, base = model.config, _base_model(model.config)
    lora = config.backbone.lora.r > 0
    weights = "trainable" if base is not None and lora else "full"
    save_file(_student_state(model, weights == "trainable"), out / HUB_WEIGHTS)
    if lora:
        state, adapter_config = _adapter_state(model)
        (out / ADAPTER_DIR).mkdir(exist_ok=True)
        save_file(state, out / ADAPTER_DIR / "adapter_model.safetensors")
        text = json.dumps(adapter_config, indent=1, default=list)
        (out / ADAPTER_DIR / "adapter_config.json").write_text(text)
    meta = {
        "tritemporal_version": tritemporal.__version__,
        "config": config.to_dict(),
        "base_model": base,
        "weights": weights,
    }
    (out / HUB_CONFIG).write_text(json.dumps(meta, indent=1))
    from tritemporal.model_card import render_model_card

    (out / MODEL_CARD).write_text(render_model_card(meta, card_extras or {}))
    return out


def check_model_folder(folder: Path) -> None:
    """Clear error unless `folder` holds a complete saved model."""
    missing = [
        name for name in (HUB_CONFIG, HUB_WEIGHTS, MODEL_CARD) if not (folder / name).is_file()
    ]
    if missing:
        raise FileNotFoundError(
            f"{folder} is not a complete tritemporal model folder: missing {missing}; create one "
            "with TriTemporalModel.save_pretrained or point at a run directory"
        )


def from_pretrained(
    source: str | Path,
    revision: str | None = None,
    cache_dir: str | None = None,
    token: str | None = None,
    local_files_only: bool = False,
) -> TriTemporalModel:
    """Load a saved model from a local folder or a Hub repo id (base weights from their Hub id)."""
    from safetensors.torch import load_file

    folder = Path(source)
    if not folder.is_dir():
        from huggingface_hub import snapshot_download

        folder = Path(
            snapshot_download(
                str(source),
                revision=revision,
                cache_dir=cache_dir,
                token=token,
                local_files_only=local_files_only,
            )
        )
    check_model_folder(folder)
    meta = json.loads((folder / HUB_CONFIG).read_text())
    config = TriTemporalConfig.from_dict(meta["config"], source=str(folder / HUB_CONFIG))
    model = TriTemporalModel(config)
    state = load_file(folder / HUB_WEIGHTS)
    if (folder / ADAPTER_DIR).is_dir():
        state.update(
            _adapter_to_model_keys(
                model, load_file(folder / ADAPTER_DIR / "adapter_model.safetensors")
            )
        )
    own = model.state_dict()
    unexpected = sorted(set(state) - set(own))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    missing = sorted(trainable - set(state))
    if unexpected or missing:
        raise ValueError(
            f"{folder}: weights do not fit the model its config builds (unexpected "
            f"{unexpected[:5]}, missing {missing[:5]})"
        )
    model.load_state_dict(state, strict=False)
    model.sync_teacher()
    return model.eval()


def _adapter_to_model_keys(model: TriTemporalModel, state: dict) -> dict[str, torch.Tensor]:
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


def push_to_hub(
    model_or_path: TriTemporalModel | str | Path,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    commit_message: str = "Upload tritemporal model",
) -> str:
    """Create the repo if needed and upload a saved model (or a run, saved first) in one commit."""
    import tempfile

    from huggingface_hub import HfApi, get_token
    from huggingface_hub.utils import HFValidationError, validate_repo_id

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
    with tempfile.TemporaryDirectory() as tmp:
        if isinstance(model_or_path, TriTemporalModel):
            folder = save_pretrained(model_or_path, tmp)
        elif (Path(model_or_path) / HUB_CONFIG).is_file():
            folder = Path(model_or_path)
        else:
            checkpoint = resolve_checkpoint(model_or_path)
            folder = save_pretrained(load_model(checkpoint), tmp, run_card_extras(checkpoint))
        check_model_folder(folder)
        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id, folder_path=str(folder), revision=revision,
            commit_message=commit_message,
        )  # fmt: skip
    return str(getattr(info, "commit_url", info))


def merge_to_transformers(source: str | Path, out_dir: str | Path) -> Path:
    """Fold LoRA into the base and write encoder + predictor as a transformers VJEPA2Model."""
    from transformers import VJEPA2Model

    path = Path(source)
    model = load_model(path) if not (path / HUB_CONFIG).is_file() else from_pretrained(path)
    if _base_model(model.config) is None:
        raise ValueError(
            f"{source} uses the built-in {model.config.backbone.name!r} ViT; merge writes "
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
    stats = {
        "image_mean": list(model.backbone.pixel_mean),
        "image_std": list(model.backbone.pixel_std),
    }
    (out / "video_preprocessor_config.json").write_text(json.dumps(stats, indent=1))
    return out

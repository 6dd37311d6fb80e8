"""The model card (README.md) written beside every saved model."""

from __future__ import annotations

import json
from typing import Any

SAFETY = (
    "This is research code and a research model. It is **not a driving policy** and is not safe "
    "to deploy in real vehicles without extensive validation, safety engineering and "
    "regulatory compliance."
)


EVENT_TARGETS = {
    "change": "the EMA teacher's change from the last NOW step to the EVENTUALLY window",
    "window": "the EMA teacher's EVENTUALLY window",
    "ego": "the ego's own future motion (speed and heading change, lateral and along-track "
    "displacement; trained on videos with `speed` and `heading` or `yaw_rate` series)",
}


def objectives_line(loss: dict[str, Any]) -> str:
    """The card's account of what trained the model: each objective's weight and, for
    EVENTUALLY, its target, how much of it reached the encoder and whether labels were read."""
    parts = [
        f"{name} x{loss[key]:g}"
        for name, key in (("V-JEPA spatial", "lambda_vjepa"), ("SOON", "lambda_soon"))
        if loss[key] > 0
    ]
    if loss["lambda_event"] > 0:
        grad, target = loss["event_encoder_grad"], loss["event_target"]
        reach = {1: "end to end", 0: "outcome head only"}.get(grad, f"encoder gradient x{grad:g}")
        if loss["lambda_supcon"] > 0:
            reach += f"; SupCon x{loss['lambda_supcon']:g} on maneuver labels where present"
        weight = loss["lambda_event"]
        parts.append(f"EVENTUALLY x{weight:g} toward `{target}`, {EVENT_TARGETS[target]} ({reach})")
    if loss["lambda_ce"] > 0:
        parts.append(f"cross-entropy x{loss['lambda_ce']:g} on maneuver labels")
    return "; ".join(parts)


def render_model_card(meta: dict[str, Any], extras: dict[str, Any]) -> str:
    """Markdown card: what it is, base model, config, data, evaluation, intended use, safety."""
    config, base = meta["config"], meta["base_model"]
    backbone = config["backbone"]
    shipped = meta.get("shipped_base")
    if base:
        base_line = (
            f"[{base['id']}](https://huggingface.co/{base['id']}), "
            f"revision `{base['revision'] or 'main'}`"
        )
    elif shipped:
        base_line = (
            f"`{shipped}`, the pretrained base shipped with tritemporal "
            f"(`TriTemporalModel.from_pretrained('{shipped}')`)"
        )
    else:
        base_line = f"none: the built-in `{backbone['name']}` ViT trained from scratch"
    lora = backbone["lora"]
    tuning = (
        f"LoRA r={lora['r']}, alpha={lora['alpha']} on {', '.join(lora['apply_to'])} "
        "(adapter in `adapter/`, peft format)"
        if lora["r"] > 0
        else "all weights"
    )
    front = ["---", "library_name: tritemporal", "tags:", "- video", "- v-jepa", "- driving"]
    front += ["- world-model", "license: apache-2.0"]
    if base:
        front.append(f"base_model: {base['id']}")
    front.append("---")
    clip = config["clip"]
    lines = [
        *front,
        "",
        "# Tri-temporal V-JEPA driving world model",
        "",
        "A V-JEPA video encoder fine-tuned with three coupled time scales: **NOW** (latent "
        "perception of the present), **SOON** (masked latent forecasting of the next frames) and "
        "**EVENTUALLY** (a compact outcome embedding of where the scene is heading, aligned by "
        "InfoNCE to a view of the far future). Trained with tritemporal.",
        "",
        f"- Base model: {base_line}",
        f"- Fine-tuned: {tuning}",
        f"- Objectives: {objectives_line(config['loss'])}",
        f"- Clips: {clip['now_frames']} NOW + {clip['soon_frames']} SOON + "
        f"{clip['eventually_frames']} EVENTUALLY frames at {config['data']['fps']} fps, "
        f"{clip['image_size']} px, tubelets {clip['tubelet_t']}x{clip['patch']}x{clip['patch']}",
        f"- Training data: {extras.get('data', 'data.source=' + config['data']['source'])}",
        f"- Steps: {extras.get('step', config['train']['steps'])}",
        "",
        "## Use",
        "",
        "```python",
        "from tritemporal import TriTemporalModel",
        "",
        'model = TriTemporalModel.from_pretrained("REPO_OR_FOLDER")',
        "out = model.encode(video)  # uint8 (B, C, T, H, W) or a video path",
        'out["now"], out["soon"], out["eventually"]',  # ruff-formatted: cards live in the repo
        "```",
        "",
        "Intended use: research on video world models and representation learning for driving "
        "scenes (probing, forecasting, retrieval of similar situations).",
        "",
        "## Evaluation",
        "",
    ]
    evaluation = extras.get("evaluation")
    if isinstance(evaluation, str):  # Markdown written by the caller (e.g. `export --notes`)
        lines.append(evaluation.strip())
    elif evaluation:
        lines.append("```json\n" + json.dumps(evaluation, indent=1) + "\n```")
    else:
        lines.append("Not evaluated yet.")
    lines += ["", "## Configuration", "", "```json", json.dumps(config, indent=1), "```"]
    lines += ["", "## Safety", "", SAFETY, ""]
    return "\n".join(lines)

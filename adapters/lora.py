"""LoRA fine-tuning with peft, and an EMA teacher that shares the frozen base weights.

`apply_lora` injects peft LoRA layers into the backbone's encoder (and predictor, when asked),
which freezes every base weight. A plain EMA teacher would be a full copy of the encoder; under
LoRA only the adapter weights (and anything else left trainable) change, so `SharedBaseTeacher`
keeps EMA copies of just those tensors and runs the *student's* modules with them swapped in
(`torch.func.functional_call`), in eval mode and without gradients. Its memory is the size of
the adapters, not of the encoder. A frozen teacher is the same object never updated: LoRA's B
matrices start at zero, so its initial copies reproduce the pretrained encoder exactly.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from tritemporal.adapters.registry import Backbone
from tritemporal.config import LoraConfig
from tritemporal.ema import ema_lerp_

ADAPTER_NAME = "default"


def peft_lora_config(cfg: LoraConfig, targets: list[str], layers_pattern: str) -> object:
    """The peft LoraConfig for one part of the backbone."""
    # peft imports transformers (seconds): on first use
    from peft import LoraConfig as PeftLoraConfig

    return PeftLoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=list(cfg.target_modules or targets),
        layers_to_transform=list(cfg.layers) if cfg.layers is not None else None,
        layers_pattern=layers_pattern if cfg.layers is not None else None,
    )


def apply_lora(backbone: Backbone, cfg: LoraConfig) -> None:
    """Inject LoRA into the parts named by `cfg.apply_to`; every base weight becomes frozen.

    Parts left out stay frozen too, except the predictor when `train_predictor` is set. The
    predictor's mask tokens (one per objective, a few KB) always train with it or its adapters.
    """
    from peft import inject_adapter_in_model  # peft imports transformers (seconds): on first use

    for part in ("encoder", "predictor"):
        module = getattr(backbone, part)
        module.requires_grad_(False)
        if part in cfg.apply_to:
            targets, pattern = backbone.lora_targets[part]
            config = peft_lora_config(cfg, targets, pattern)
            try:
                inject_adapter_in_model(config, module, adapter_name=ADAPTER_NAME)
            except ValueError as exc:
                names = (n for n, m in module.named_modules() if isinstance(m, nn.Linear))
                linear = sorted({n.rsplit(".", 1)[-1] for n in names})
                raise ValueError(
                    f"backbone.lora could not adapt the {part}: {exc}. Linear layer names "
                    f"there: {linear} (set backbone.lora.target_modules)"
                ) from exc
        elif part == "predictor":
            module.requires_grad_(cfg.train_predictor)
        if part == "predictor" and (part in cfg.apply_to or cfg.train_predictor):
            for name, param in module.named_parameters():
                if name.endswith("mask_tokens"):
                    param.requires_grad_(True)


class SharedBaseTeacher(nn.Module):
    """EMA teacher holding copies of the student encoder's trainable tensors only."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self._student = [student]  # a list, so the student is not registered twice
        self.names = [n for n, p in student.named_parameters() if p.requires_grad]
        params = dict(student.named_parameters())
        for i, name in enumerate(self.names):
            self.register_buffer(f"ema_{i}", params[name].detach().clone())

    def ema_tensors(self) -> list[torch.Tensor]:
        """The EMA copies, in the order of `names`."""
        return [getattr(self, f"ema_{i}") for i in range(len(self.names))]

    @torch.no_grad()
    def update(self, momentum: float, skip: torch.Tensor | None = None) -> None:
        """teacher <- m * teacher + (1 - m) * student, for the trainable tensors only (not where
        `skip` is true: see `ema.ema_lerp_`)."""
        params = dict(self._student[0].named_parameters())
        student = [params[name].detach() for name in self.names]
        ema_lerp_(self.ema_tensors(), student, momentum, skip)

    @torch.no_grad()
    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """Encode the whole clip with the student's modules and the EMA tensors, in eval mode."""
        student = self._student[0]
        was_training = student.training
        student.eval()
        try:
            swapped = dict(zip(self.names, self.ema_tensors(), strict=True))
            return functional_call(student, swapped, (video,))
        finally:
            student.train(was_training)

"""From a dataset to training batches: step-keyed sampling, mask generation, DataLoader.

Everything random here is a pure function of (train.seed, step): the batch sampler picks the
sample indices of step s from a per-epoch seeded permutation, and the collator draws the step's
masks from a generator seeded with (seed, step). So any number of DataLoader workers, and a run
resumed at step s, see exactly the batches an uninterrupted run sees.

`train.batch_size` is the global batch. Under torchrun, rank r of N takes the contiguous slice
[r * b, (r + 1) * b), b = batch_size / N, of exactly the batch one process would build for the
step: the same sample keys (so the same augmentation seeds), and the masks drawn for the whole
batch then sliced (mask counts are fixed per generator, so rows can be taken apart). Each rank
decodes only its own samples, and N processes see the batches one process would.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from tritemporal.config import TriTemporalConfig
from tritemporal.objectives.masks import MaskSet, MultiBlockMask


def derive_seed(*parts: int) -> int:
    """A 63-bit seed that mixes integers (seed, step, rank...) without collisions in practice."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@dataclass
class TrainBatch:
    """One step's clips, outcome labels (-1 = none), masks (short, long), for an
    action-conditioned model the ego signals (`action.signals`) at every frame, and for the ego
    EVENTUALLY target (loss.event_target=ego) the ego's future motion (data/ego_motion.py)."""

    step: int
    video: torch.Tensor  # (B, C, T, H, W)
    labels: torch.Tensor  # (B,)
    masks: list[MaskSet]
    signals: torch.Tensor | None = None  # (B, T, F)
    ego_motion: torch.Tensor | None = None  # (B, 4 K)

    def inputs(self) -> dict[str, Any]:
        """The model's step arguments from this batch: `model(**batch.inputs(), ...)`."""
        return {
            "video": self.video,
            "masks": self.masks,
            "labels": self.labels,
            "signals": self.signals,
            "ego_motion": self.ego_motion,
        }

    def head(self, n: int) -> TrainBatch:
        """The batch of its first `n` clips (every per-clip tensor, masks included, sliced)."""
        return self._map(lambda t: t[:n])

    def pin_memory(self) -> TrainBatch:
        """Page-lock tensors so host-to-device copies can overlap compute."""
        return self._map(lambda t: t.pin_memory())

    def to(self, device: torch.device | str) -> TrainBatch:
        """Move every tensor to `device` (non-blocking when pinned)."""
        return self._map(lambda t: t.to(device, non_blocking=True))

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> TrainBatch:
        masks = [MaskSet(context=fn(m.context), target=fn(m.target)) for m in self.masks]
        signals = None if self.signals is None else fn(self.signals)
        motion = None if self.ego_motion is None else fn(self.ego_motion)
        return replace(
            self,
            video=fn(self.video),
            labels=fn(self.labels),
            masks=masks,
            signals=signals,
            ego_motion=motion,
        )


def local_batch_size(batch_size: int, world_size: int) -> int:
    """Clips per process of a global `train.batch_size`; a clear error when it does not split."""
    if batch_size % world_size:
        raise ValueError(
            f"train.batch_size={batch_size} is the global batch and must split evenly over the "
            f"{world_size} processes; use a multiple of {world_size}"
        )
    local = batch_size // world_size
    if local < 2:
        raise ValueError(
            f"train.batch_size={batch_size} over {world_size} processes leaves {local} clip per "
            f"process; the model needs >= 2 per process, so use train.batch_size >= "
            f"{2 * world_size}"
        )
    return local


class StepBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yields, for each step from `start_step`, the keys (step, sample index) of its batch
    (of this rank's slice of it when `world_size` > 1)."""

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        steps: int,
        seed: int,
        start_step: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.num_samples, self.batch_size = num_samples, batch_size
        self.steps, self.seed, self.start_step = steps, seed, start_step
        self.local = local_batch_size(batch_size, world_size)
        self.offset = rank * self.local

    def __len__(self) -> int:
        return max(0, self.steps - self.start_step)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        perm_epoch, perm = -1, None
        for step in range(self.start_step, self.steps):
            keys = []
            first = step * self.batch_size + self.offset
            for position in range(first, first + self.local):
                epoch, offset = divmod(position, self.num_samples)
                if epoch != perm_epoch:
                    g = torch.Generator().manual_seed(derive_seed(self.seed, epoch))
                    perm, perm_epoch = torch.randperm(self.num_samples, generator=g), epoch
                keys.append((step, int(perm[offset])))
            yield keys


class StepKeyed(Dataset):
    """Wraps a dataset so it accepts (step, index) keys and tags each sample with its step.

    Sources with training augmentation expose `sample(index, generator)`; the generator is
    seeded from (seed, step, index), so augmentations repeat exactly on resume and in any worker.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        step, index = key
        sample = getattr(self.dataset, "sample", None)
        if sample is None:
            return {**self.dataset[index], "step": step}
        generator = torch.Generator().manual_seed(derive_seed(self.seed, step, index))
        return {**sample(index, generator), "step": step}


class MaskCollator:
    """Stacks samples and draws the step's short and long masks from a (seed, step) generator.

    With `world_size` > 1 the samples are rank `rank`'s slice of the global batch: masks are
    drawn for all world_size * len(samples) rows and this rank's rows are kept.
    """

    def __init__(self, config: TriTemporalConfig, rank: int = 0, world_size: int = 1) -> None:
        m = config.mask
        aspect = (m.aspect_min, m.aspect_max)
        grid = config.clip.grid
        self.generators = [
            MultiBlockMask(grid, m.short_num_blocks, m.short_scale, aspect),
            MultiBlockMask(grid, m.long_num_blocks, m.long_scale, aspect),
        ]
        self.seed = config.train.seed
        self.rank, self.world_size = rank, world_size
        conditioned = config.predictor.action_conditioning
        self.signals = tuple(config.action.signals) if conditioned else ()

    def __call__(self, samples: list[dict]) -> TrainBatch:
        """Collate one step's samples into a TrainBatch."""
        step = samples[0]["step"]
        assert all(s["step"] == step for s in samples), "a batch must come from one step"
        g = torch.Generator().manual_seed(derive_seed(self.seed, step, 0x4D41534B))
        n = len(samples)
        motion = "ego_motion" in samples[0]  # the dataset adds it for loss.event_target=ego
        masks = [gen(n * self.world_size, g) for gen in self.generators]
        if self.world_size > 1:
            rows = slice(self.rank * n, (self.rank + 1) * n)
            masks = [MaskSet(context=m.context[rows], target=m.target[rows]) for m in masks]
        return TrainBatch(
            step=step,
            video=torch.stack([s["video"] for s in samples]),
            labels=torch.stack([torch.as_tensor(s["label"]).long() for s in samples]),
            masks=masks,
            signals=stack_signals(samples, self.signals) if self.signals else None,
            ego_motion=torch.stack([s["ego_motion"] for s in samples]) if motion else None,
        )


def stack_signals(samples: list[dict], names: tuple[str, ...]) -> torch.Tensor:
    """The ego series `names` of every sample's frames, (B, T, F) float32."""
    rows = []
    for s in samples:
        missing = [n for n in names if n not in s.get("signals", {})]
        if missing:
            raise ValueError(
                f"a sample has no ego series {missing} (action.signals), which "
                "predictor.action_conditioning needs: use annotated videos (data.source=videos "
                "or highway); the synthetic source has none"
            )
        rows.append(torch.stack([torch.as_tensor(s["signals"][n]) for n in names], dim=-1))
    return torch.stack(rows).float()


def build_loader(
    config: TriTemporalConfig,
    dataset: Dataset,
    start_step: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    """DataLoader yielding one TrainBatch per step from `start_step` to `train.steps` (rank
    `rank`'s slice of the global batch when `world_size` > 1)."""
    t, d = config.train, config.data
    sampler = StepBatchSampler(
        len(dataset), t.batch_size, t.steps, t.seed, start_step, rank, world_size
    )
    workers = d.num_workers
    return DataLoader(
        StepKeyed(dataset, t.seed),
        batch_sampler=sampler,
        collate_fn=MaskCollator(config, rank, world_size),
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        prefetch_factor=d.prefetch_factor if workers > 0 else None,
        persistent_workers=workers > 0,
    )

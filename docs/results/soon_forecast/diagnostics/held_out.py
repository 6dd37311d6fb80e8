"""What every diagnostic here reads: a run's model and every n-th window of a held-out folder."""

from collections.abc import Iterator

import torch

from tritemporal.eval.compare import load_source
from tritemporal.eval.report import decoded_batches, eval_dataset
from tritemporal.model import TriTemporalModel


class EveryNth:
    """Windows 0, n, 2n, ... of a dataset, as a dataset."""

    def __init__(self, dataset, n: int) -> None:
        self.dataset, self.idx = dataset, list(range(0, len(dataset), n))

    def __getitem__(self, i: int) -> dict:
        return self.dataset[self.idx[i]]

    def __len__(self) -> int:
        return len(self.idx)


def model_and_batches(
    source: str, held: str, every: int, batch_size: int = 16
) -> tuple[TriTemporalModel, Iterator[list[dict]]]:
    """The model `source` names (gradients off) and its evaluation windows of `held`, every
    `every`-th, in batches of decoded samples."""
    torch.set_grad_enabled(False)
    model = load_source(source).eval()
    windows = EveryNth(eval_dataset(model.config, held), every)
    return model, decoded_batches(windows, len(windows), batch_size)

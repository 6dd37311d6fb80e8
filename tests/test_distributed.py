"""Multi-process training on CPU: 2 processes (gloo, torchrun) against 1 process.

Every 2-process job runs in one torchrun launch (starting one costs more than a tiny run): this
file, run as `python -m torch.distributed.run --nproc_per_node=2 -m tests.test_distributed
JOBS.json`, joins the process group once (`train` then reuses it: gloo does not reliably
rejoin a group destroyed in the same process) and runs each job in turn, a real CLI call
(`tritemporal train ...`) or the gathered-EVENTUALLY check. The fresh DDP run is launched
alone, as `torchrun -m tritemporal.cli train`, so that `train` itself joins the group once.
The tests compare what the jobs wrote with one-process runs made here, with one thread as
each torchrun worker has (OMP_NUM_THREADS=1; on 2 cores two threads per process contend).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors import safe_open

from tests.conftest import TINY, tiny_config, vjepa2_overrides
from tritemporal.checkpoint import (
    CHECKPOINTS_DIR,
    LAST_LINK,
    MODEL_FILE,
    OPTIMIZER_FILE,
    STATE_FILE,
)
from tritemporal.cli import main
from tritemporal.config import LossConfig
from tritemporal.data.sources import build_dataset
from tritemporal.heads.outcome import OutcomeAbstractor
from tritemporal.loader import build_loader, local_batch_size
from tritemporal.metrics import METRICS_FILE, read_metrics
from tritemporal.objectives.eventually import EventuallyAlignment
from tritemporal.train import train

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
KEYS = ("loss", "loss_vjepa", "loss_soon", "loss_event", "grad_norm")
STEPS = 6  # the tiny config's run; checkpoints at 3 and 6
STRATEGIES = ("ddp", "fsdp")


def _overrides(run_dir: Path, *extra: str) -> list[str]:
    """The tiny run (global batch 4, 6 steps), every step logged."""
    return [*TINY, "train.log_every=1", f"train.run_dir={run_dir}", *extra]


def _train_job(run_dir: Path, *extra: str, resume: bool = False) -> list[str]:
    """CLI arguments of a tiny run."""
    sets = [arg for item in _overrides(run_dir, *extra) for arg in ("--set", item)]
    return ["train", *sets, *(["--resume"] if resume else [])]


def _torchrun(*args: str) -> None:
    """`args` under torchrun with 2 CPU processes; fails with their output if they fail."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # python -m puts the repo root (cwd) on sys.path
    with subprocess.Popen(
        [*TORCHRUN, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    ) as proc:  # fmt: skip
        try:
            output = proc.communicate(timeout=300)[0]
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the workers too, not only the launcher
            output = proc.communicate()[0]
    assert proc.returncode == 0, f"torchrun {' '.join(args)} failed:\n{output[-6000:]}"


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _train_one(run_dir: Path, *extra: str, resume: bool = False) -> Path:
    """A tiny run in this process."""
    with _one_thread():
        return train(tiny_config(*_overrides(run_dir, *extra)), resume=resume)


def _losses(run_dir: Path) -> dict[int, dict[str, float]]:
    return {r["step"]: r for r in read_metrics(run_dir)}


def _assert_same_losses(expected: Path, got: Path, steps: range) -> None:
    a, b = _losses(expected), _losses(got)
    assert sorted(b) == list(steps)
    for step in steps:
        for key in KEYS:
            assert math.isclose(a[step][key], b[step][key], rel_tol=1e-4), (step, key)


def _rewound(run_dir: Path, to: Path) -> Path:
    """A copy of `run_dir` as it stood after its step-3 checkpoint (without its metrics)."""
    shutil.copytree(run_dir, to, symlinks=True)
    checkpoints = to / CHECKPOINTS_DIR
    shutil.rmtree(checkpoints / f"step_{STEPS:08d}")
    (checkpoints / LAST_LINK).unlink()
    (checkpoints / LAST_LINK).symlink_to("step_00000003")
    (to / METRICS_FILE).unlink()
    return to


@pytest.fixture(scope="module")
def one_process(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: the tiny run in one process."""
    return _train_one(tmp_path_factory.mktemp("one") / "run")


@pytest.fixture(scope="module")
def vjepa2_one_process(tmp_path_factory: pytest.TempPathFactory, vjepa2_dir: Path) -> Path:
    """The tiny run on the tiny transformers V-JEPA 2 in one process."""
    return _train_one(tmp_path_factory.mktemp("vjepa2") / "run", *vjepa2_overrides(vjepa2_dir))


@pytest.fixture(scope="module")
def two_processes(
    tmp_path_factory: pytest.TempPathFactory, one_process: Path, vjepa2_dir: Path
) -> dict[str, Path]:
    """Every 2-process job: the fresh DDP run through `torchrun -m tritemporal.cli`, then in one
    launch the EVENTUALLY check, the fresh FSDP2 run, DDP and FSDP2 resumes of the one-process
    run's step-3 checkpoint, an FSDP2 run on V-JEPA 2 and a compiled FSDP2 run."""
    root = tmp_path_factory.mktemp("two")
    out = {"eventually": root / "eventually", "ddp": root / "ddp", "fsdp": root / "fsdp"}
    _torchrun("-m", "tritemporal.cli", *_train_job(out["ddp"], "dist.strategy=ddp"))
    jobs = [["eventually", str(out["eventually"])], _train_job(out["fsdp"], "dist.strategy=fsdp")]
    for strategy in STRATEGIES:
        resumed = out[f"resumed-{strategy}"] = _rewound(one_process, root / f"resumed-{strategy}")
        jobs.append(_train_job(resumed, f"dist.strategy={strategy}", resume=True))
    out["vjepa2"] = root / "vjepa2"
    jobs.append(_train_job(out["vjepa2"], "dist.strategy=fsdp", *vjepa2_overrides(vjepa2_dir)))
    out["fsdp-compiled"] = root / "fsdp-compiled"
    jobs.append(_train_job(out["fsdp-compiled"], "dist.strategy=fsdp", "train.compile=true"))
    (root / "jobs.json").write_text(json.dumps(jobs))
    _torchrun("-m", "tests.test_distributed", str(root / "jobs.json"))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_two_processes_give_the_losses_of_one(
    strategy: str, one_process: Path, two_processes: dict[str, Path]
) -> None:
    """Same losses and grad norm at every step, so the same gradients too."""
    _assert_same_losses(one_process, two_processes[strategy], range(1, STEPS + 1))


@pytest.mark.slow
def test_compiled_blocks_under_fsdp_give_the_losses_of_one_eager_process(
    one_process: Path, two_processes: dict[str, Path]
) -> None:
    """FSDP2's gathers run inside blocks that `train.compile` compiled: results unchanged."""
    _assert_same_losses(one_process, two_processes["fsdp-compiled"], range(1, STEPS + 1))


@pytest.mark.slow
def test_fsdp_shards_vjepa2_blocks(vjepa2_one_process: Path, two_processes: dict[str, Path]):
    """transformers' V-JEPA 2 layers run as functions of their submodules, not as modules."""
    _assert_same_losses(vjepa2_one_process, two_processes["vjepa2"], range(1, STEPS + 1))


def _layout(run_dir: Path) -> tuple:
    """Names, shapes and dtypes of the last checkpoint's tensors; its optimizer metadata."""
    ckpt = run_dir / CHECKPOINTS_DIR / LAST_LINK
    tensors = []
    for name in (MODEL_FILE, OPTIMIZER_FILE):
        with safe_open(str(ckpt / name), framework="pt") as f:
            slices = {k: f.get_slice(k) for k in f.keys()}  # noqa: SIM118 (no __iter__)
            tensors.append({k: (v.get_shape(), v.get_dtype()) for k, v in slices.items()})
    state = json.loads((ckpt / STATE_FILE).read_text())
    return tensors, state["param_groups"], state["optimizer_state"], state["step"]


@pytest.mark.slow
def test_checkpoints_have_the_single_process_format(
    one_process: Path, two_processes: dict[str, Path]
) -> None:
    expected = _layout(one_process)
    assert all(_layout(two_processes[strategy]) == expected for strategy in STRATEGIES)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_two_process_checkpoints_resume_in_one(
    strategy: str, one_process: Path, two_processes: dict[str, Path], tmp_path: Path
) -> None:
    saved = _rewound(two_processes[strategy], tmp_path / "run")
    _assert_same_losses(one_process, _train_one(saved, resume=True), range(4, STEPS + 1))


@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_one_process_checkpoints_resume_in_two(
    strategy: str, one_process: Path, two_processes: dict[str, Path]
) -> None:
    _assert_same_losses(one_process, two_processes[f"resumed-{strategy}"], range(4, STEPS + 1))


def test_each_process_gets_its_slice_of_the_global_batch() -> None:
    config = tiny_config("train.steps=2")
    dataset = build_dataset(config)
    whole = list(build_loader(config, dataset))
    for rank in range(2):
        rows = slice(2 * rank, 2 * rank + 2)
        for a, b in zip(whole, build_loader(config, dataset, 0, rank, 2), strict=True):
            assert torch.equal(a.video[rows], b.video) and torch.equal(a.labels[rows], b.labels)
            for ma, mb in zip(a.masks, b.masks, strict=True):
                assert torch.equal(ma.context[rows], mb.context)
                assert torch.equal(ma.target[rows], mb.target)


def test_a_batch_that_does_not_split_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"train\.batch_size=4 .* 3 processes"):
        local_batch_size(4, 3)
    with pytest.raises(ValueError, match=r"leaves 1 clip per process.*batch_size >= 8"):
        local_batch_size(4, 4)
    config = tiny_config("train.batch_size=6")
    with pytest.raises(ValueError, match=r"train\.batch_size=6 .* 4 processes"):
        build_loader(config, build_dataset(config), 0, 1, 4)


def test_dist_strategy_is_validated() -> None:
    with pytest.raises(ValueError, match=r"dist\.strategy='zero': use ddp or fsdp"):
        tiny_config("dist.strategy=zero")
    with pytest.raises(ValueError, match=r"dist\.strategy=fsdp with backbone\.lora\.r=4"):
        tiny_config("dist.strategy=fsdp", "backbone.lora.r=4")


# EVENTUALLY over the global batch: B clips split over the processes must give the loss, the
# DDP-averaged gradients and the BatchNorm statistics of one process with all B.
B, N, D = 8, 6, 16
LABELS = [0, 1, 0, 2, 1, -1, 2, 0]  # SupCon positives across the two halves


def _eventually_parts() -> tuple[OutcomeAbstractor, EventuallyAlignment, list[torch.Tensor]]:
    torch.manual_seed(0)
    config = tiny_config()
    head = OutcomeAbstractor(D, config.outcome)
    objective = EventuallyAlignment(D, config.outcome.out_dim, LossConfig())
    inputs = [torch.randn(B, N, D), torch.randn(B, N, D), torch.randn(B, N, D)]
    return head, objective, [*inputs, torch.tensor(LABELS)]


def _eventually_step(head, objective, now, event, last, labels) -> tuple[torch.Tensor, dict]:
    """EVENTUALLY loss of the rows given, after backward: (loss, grads and BN statistics)."""
    loss, _ = objective(head(now), event, last, labels)
    loss.backward()
    named = [*head.named_parameters(prefix="head"), *objective.named_parameters(prefix="obj")]
    found = {name: p.grad for name, p in named}
    found["running_mean"] = head.standardize.running_mean
    found["running_var"] = head.standardize.running_var
    return loss.detach(), found


def _eventually_job(out: str) -> None:
    """Under torchrun: this rank's share of the batch, gradients averaged as DDP does."""
    rank, world = dist.get_rank(), dist.get_world_size()
    head, objective, inputs = _eventually_parts()
    rows = slice(rank * B // world, (rank + 1) * B // world)
    loss, found = _eventually_step(head, objective, *(x[rows] for x in inputs))
    for name, _ in [*head.named_parameters("head"), *objective.named_parameters("obj")]:
        dist.all_reduce(found[name])
        found[name] /= world
    torch.save({"loss": loss, **found}, f"{out}.{rank}")


@pytest.mark.slow
def test_gathered_eventually_is_the_global_batch_loss(two_processes: dict[str, Path]) -> None:
    head, objective, inputs = _eventually_parts()
    loss, expected = _eventually_step(head, objective, *inputs)
    assert expected["head.head.weight"].abs().sum() > 0  # the gradient reaches the head
    for rank in range(2):
        got = torch.load(f"{two_processes['eventually']}.{rank}")
        assert torch.allclose(got.pop("loss"), loss, rtol=1e-5), rank
        assert got.keys() == expected.keys()
        for name, value in expected.items():
            # float32 sums in another order differ by ~5e-5 of a tensor's largest entry; biases
            # just before a BatchNorm have a true gradient of 0, so only rounding noise (~2e-5)
            error = (got[name] - value).abs().max()
            assert error <= 1e-3 * value.abs().max() + 1e-4, (rank, name, float(error))


def _run_jobs(jobs_file: str) -> None:
    """Under torchrun: each job in turn, a CLI call or ["eventually", OUT]; stop at a failure."""
    dist.init_process_group("gloo")
    for job in json.loads(Path(jobs_file).read_text()):
        if job[0] == "eventually":
            _eventually_job(job[1])
        else:
            code = main(job)
            assert code == 0, f"tritemporal {' '.join(job)} exited with {code}"
    dist.destroy_process_group()


if __name__ == "__main__":
    _run_jobs(*sys.argv[1:])

"""Checkpoints: exact round trip and resume, RNG restore, `last`, pruning, crash safety, errors."""

from __future__ import annotations

import copy
import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.torch
import torch
from torch import nn

from tritemporal import checkpoint as ck
from tritemporal.checkpoint import (
    CHECKPOINTS_DIR,
    LAST_LINK,
    MODEL_FILE,
    OPTIMIZER_FILE,
    STATE_FILE,
    DamagedCheckpointError,
    find_last_checkpoint,
    list_checkpoints,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)

CONFIG = {"model": {"hidden": 8}, "lr": 1e-3, "name": "tiny"}


def make_model(seed: int = 0, hidden: int = 8) -> nn.Module:
    """Linear -> LayerNorm -> Dropout -> Linear, plus a persistent buffer."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(4, hidden), nn.LayerNorm(hidden), nn.Dropout(0.2), nn.Linear(hidden, 3)
    )
    model.register_buffer("ema_momentum", torch.tensor([0.996], dtype=torch.float64))
    return model


def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    """AdamW with two param groups: decayed matrices, undecayed biases and norms."""
    decay = [p for p in model.parameters() if p.ndim == 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    return torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": 0.05},
            {"params": no_decay, "weight_decay": 0.0, "lr": 3e-4},
        ],
        lr=1e-3,
        betas=(0.9, 0.95),
    )


def train(model: nn.Module, opt: torch.optim.Optimizer, steps: int) -> None:
    """A few steps on random data (draws from torch's RNG, and dropout does too)."""
    model.train()
    for _ in range(steps):
        x, y = torch.randn(5, 4), torch.randn(5, 3)
        loss = ((model(x) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.ema_momentum.mul_(1.0001)


def trained(steps: int = 2) -> tuple[nn.Module, torch.optim.Optimizer]:
    """A model and AdamW after `steps` steps."""
    model = make_model()
    opt = make_optimizer(model)
    train(model, opt, steps)
    return model, opt


def assert_same(a: Any, b: Any, where: str = "") -> None:
    """Bit-exact, type-exact equality of nested state (tensors: dtype, shape, values)."""
    assert type(a) is type(b), f"{where}: {type(a)} != {type(b)}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert list(a) == list(b) or set(a) == set(b), f"{where}: keys {list(a)} != {list(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the model's state dict."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_round_trip_is_bit_exact(tmp_path: Path) -> None:
    model, opt = trained()
    path = save_checkpoint(tmp_path, 2, model, opt, CONFIG, extra={"epoch": 1})
    assert path == tmp_path / CHECKPOINTS_DIR / "step_00000002"
    assert sorted(os.listdir(path)) == sorted([MODEL_FILE, OPTIMIZER_FILE, STATE_FILE])

    model2 = make_model(seed=123)
    opt2 = make_optimizer(model2)
    state = load_checkpoint(path, model2, opt2)
    assert_same(snapshot(model), snapshot(model2), "model")
    assert_same(opt.state_dict(), opt2.state_dict(), "optimizer")
    assert opt2.state_dict()["state"][0]["step"].dtype == torch.float32
    assert isinstance(opt2.param_groups[0]["betas"], tuple)
    assert state["step"] == 2 and state["config"] == CONFIG and state["extra"] == {"epoch": 1}
    assert state["format_version"] == 1

    on_disk = json.loads((path / STATE_FILE).read_text())
    assert on_disk["param_groups"][1]["weight_decay"] == 0.0
    keys = safetensors.torch.load_file(str(path / OPTIMIZER_FILE))
    assert "state.0.exp_avg" in keys and "state.0.step" in keys


def test_resume_continues_bit_identically(tmp_path: Path) -> None:
    model, opt = trained()
    save_checkpoint(tmp_path, 2, model, opt, CONFIG)
    train(model, opt, 3)  # the uninterrupted run

    torch.manual_seed(999)  # scramble everything a resumed process would have
    random.seed(999)
    np.random.seed(999)
    resumed = make_model(seed=7)
    resumed_opt = make_optimizer(resumed)
    load_checkpoint(tmp_path, resumed, resumed_opt)  # a run dir -> its last
    train(resumed, resumed_opt, 3)
    assert_same(snapshot(model), snapshot(resumed), "model")
    assert_same(opt.state_dict(), resumed_opt.state_dict(), "optimizer")


def test_rng_restore(tmp_path: Path) -> None:
    model, opt = trained()
    save_checkpoint(tmp_path, 1, model, opt, CONFIG)
    _ = random.gauss(0, 1), np.random.randn()  # populate the cached-gaussian state too
    first = (torch.rand(4), random.random(), np.random.rand(3), random.gauss(0, 1))

    torch.manual_seed(1)
    random.seed(1)
    np.random.seed(1)
    load_checkpoint(tmp_path, make_model(), restore_rng=True)
    _ = random.gauss(0, 1), np.random.randn()
    again = (torch.rand(4), random.random(), np.random.rand(3), random.gauss(0, 1))
    assert torch.equal(first[0], again[0])
    assert first[1] == again[1] and first[3] == again[3]
    np.testing.assert_array_equal(first[2], again[2])

    torch.manual_seed(1)
    load_checkpoint(tmp_path, make_model(), restore_rng=False)
    assert not torch.equal(torch.rand(4), first[0])


def test_last_points_to_newest_and_list_is_ordered(tmp_path: Path) -> None:
    model, opt = trained()
    assert find_last_checkpoint(tmp_path) is None and list_checkpoints(tmp_path) == []
    for step in (5, 10, 100):
        save_checkpoint(tmp_path, step, model, opt, CONFIG, keep=5)
    root = tmp_path / CHECKPOINTS_DIR
    assert os.readlink(root / LAST_LINK) == "step_00000100"  # relative
    assert find_last_checkpoint(tmp_path) == (root / "step_00000100").resolve()
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "step_00000005",
        "step_00000010",
        "step_00000100",
    ]


def test_pruning_keeps_newest_and_last(tmp_path: Path) -> None:
    model, opt = trained()
    for step in range(1, 6):
        save_checkpoint(tmp_path, step, model, opt, CONFIG, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000004", "step_00000005"]

    # `last` at an older step than the newest: it survives besides the `keep` newest
    save_checkpoint(tmp_path, 3, model, opt, CONFIG, keep=1)
    names = [p.name for p in list_checkpoints(tmp_path)]
    assert names == ["step_00000003", "step_00000005"]
    assert find_last_checkpoint(tmp_path).name == "step_00000003"

    save_checkpoint(tmp_path, 6, model, opt, CONFIG, keep=0)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000006"]
    assert not [p for p in (tmp_path / CHECKPOINTS_DIR).iterdir() if p.name.startswith(".")]
    with pytest.raises(ValueError, match="keep"):
        save_checkpoint(tmp_path, 7, model, opt, CONFIG, keep=-1)


def _crash_mid_save(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """Save step 1, then crash saving step 2 in the way `how` says; check step 1 is intact."""
    model, opt = trained()
    save_checkpoint(tmp_path, 1, model, opt, CONFIG)
    expected_model, expected_opt = snapshot(model), copy.deepcopy(opt.state_dict())
    train(model, opt, 2)

    real_save = safetensors.torch.save_file

    def failing_save(tensors: dict, filename: str, *a: Any, **k: Any) -> None:
        if filename.endswith(OPTIMIZER_FILE):
            raise OSError("disk full (simulated)")
        real_save(tensors, filename, *a, **k)

    def failing_rename(src: Any, dst: Any) -> None:
        raise OSError("killed before rename (simulated)")

    def failing_symlink(*a: Any, **k: Any) -> None:
        raise OSError("killed before symlink (simulated)")

    if how == "save_file":
        monkeypatch.setattr(safetensors.torch, "save_file", failing_save)
    elif how == "rename":
        monkeypatch.setattr(os, "rename", failing_rename)
    else:
        monkeypatch.setattr(os, "symlink", failing_symlink)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(tmp_path, 2, model, opt, CONFIG)
    monkeypatch.undo()

    root = tmp_path / CHECKPOINTS_DIR
    assert find_last_checkpoint(tmp_path).name == "step_00000001"
    listed = [p.name for p in list_checkpoints(tmp_path)]
    assert listed == (["step_00000001", "step_00000002"] if how == "symlink" else ["step_00000001"])
    if how != "symlink":
        assert [p.name for p in root.iterdir() if p.name.startswith(".tmp-")]
    fresh = make_model(seed=5)
    fresh_opt = make_optimizer(fresh)
    assert load_checkpoint(tmp_path, fresh, fresh_opt)["step"] == 1
    assert_same(expected_model, snapshot(fresh), "model")
    assert_same(expected_opt, fresh_opt.state_dict(), "optimizer")

    save_checkpoint(tmp_path, 3, model, opt, CONFIG)  # the next save cleans the leftovers
    assert not [p for p in root.iterdir() if p.name.startswith(".tmp-")]
    assert find_last_checkpoint(tmp_path).name == "step_00000003"


@pytest.mark.parametrize("how", ["save_file", "rename", "symlink"])
def test_crash_mid_save_keeps_last_loadable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    _crash_mid_save(tmp_path, monkeypatch, how)


@pytest.mark.parametrize("exchange", [True, False])
def test_resave_same_step_replaces_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exchange: bool
) -> None:
    if not exchange:  # the portable fallback path (no renameat2)
        monkeypatch.setattr(ck, "_exchange", lambda a, b: False)
    model, opt = trained()
    save_checkpoint(tmp_path, 4, model, opt, CONFIG)
    train(model, opt, 1)
    save_checkpoint(tmp_path, 4, model, opt, CONFIG, extra={"again": True})
    fresh = make_model(seed=3)
    state = load_checkpoint(tmp_path, fresh)
    assert state["extra"] == {"again": True}
    assert_same(snapshot(model), snapshot(fresh), "model")
    root = tmp_path / CHECKPOINTS_DIR
    assert sorted(p.name for p in root.iterdir()) == [LAST_LINK, "step_00000004"]


def test_tied_weights_and_no_optimizer(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False))
    model[1].weight = model[0].weight  # shared storage: safetensors alone would refuse it
    save_checkpoint(tmp_path, 0, model, None, CONFIG)
    fresh = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False))
    fresh[1].weight = fresh[0].weight
    state = load_checkpoint(tmp_path, fresh)
    assert torch.equal(fresh[0].weight, model[0].weight) and state["param_groups"] is None
    with pytest.raises(ValueError, match="without optimizer"):
        load_checkpoint(tmp_path, fresh, torch.optim.AdamW(fresh.parameters()))


def test_strict_mismatch_names_keys(tmp_path: Path) -> None:
    model, opt = trained()
    save_checkpoint(tmp_path, 1, model, opt, CONFIG)
    other = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Dropout(0.2), nn.Linear(8, 8))
    other.append(nn.Linear(8, 3))
    with pytest.raises(ValueError) as err:
        load_checkpoint(tmp_path, other)
    msg = str(err.value)
    assert "step_00000001" in msg and "config" in msg
    assert "missing" in msg and "4.weight" in msg
    assert "unexpected" in msg and "ema_momentum" in msg

    with pytest.raises(ValueError, match="config likely differs") as err:
        load_checkpoint(tmp_path, make_model(hidden=16))  # same keys, other shapes
    assert "size mismatch" in str(err.value)


def test_missing_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "nope", make_model())
    (tmp_path / "run" / CHECKPOINTS_DIR).mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        load_checkpoint(tmp_path / "run", make_model())
    assert find_last_checkpoint(tmp_path / "run") is None

    model, opt = trained()
    path = save_checkpoint(tmp_path / "run", 1, model, opt, CONFIG)
    (path / OPTIMIZER_FILE).unlink()
    assert list_checkpoints(tmp_path / "run") == []
    with pytest.raises(FileNotFoundError, match=OPTIMIZER_FILE):
        load_checkpoint(path, make_model())
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        load_checkpoint(tmp_path / "run", make_model())


def test_tensor_lr_in_param_groups(tmp_path: Path) -> None:
    model = nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=torch.tensor(1e-3), foreach=False)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    save_checkpoint(tmp_path, 1, model, opt, CONFIG)
    fresh = nn.Linear(3, 2)
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=torch.tensor(5e-3), foreach=False)
    load_checkpoint(tmp_path, fresh, fresh_opt)
    assert_same(opt.state_dict(), fresh_opt.state_dict(), "optimizer")


def _saved_steps(tmp_path: Path, *steps: int) -> list[Path]:
    """Checkpoints of a trained tiny model at `steps` (all kept)."""
    model, opt = trained()
    return [save_checkpoint(tmp_path, step, model, opt, CONFIG, keep=10) for step in steps]


# file, how a copy of it went wrong, what the error says about it
DAMAGE = {
    "truncated": (MODEL_FILE, lambda b: b[:-10], r"is \d+ bytes but its header declares \d+"),
    "empty": (MODEL_FILE, lambda b: b"", "is 0 bytes: too short"),
    "garbage header": (MODEL_FILE, lambda b: b"\xff" * 16 + b[16:], r"announces a \d+-byte header"),
    "corrupt header": (OPTIMIZER_FILE, lambda b: b[:8] + b"#" + b[9:], "not safetensors JSON"),
    "extra bytes": (OPTIMIZER_FILE, lambda b: b + b"\0", "extra bytes"),
    "truncated json": (STATE_FILE, lambda b: b[: len(b) // 2], "is not valid JSON"),
}


@pytest.mark.parametrize("how", DAMAGE)
def test_a_damaged_checkpoint_names_the_file_and_the_newest_intact_one(
    tmp_path: Path, how: str
) -> None:
    older, newest, last = _saved_steps(tmp_path, 1, 2, 3)
    name, damage, says = DAMAGE[how]
    (last / name).write_bytes(damage((last / name).read_bytes()))
    for path in (
        tmp_path,
        tmp_path / CHECKPOINTS_DIR,
        tmp_path / CHECKPOINTS_DIR / LAST_LINK,
        last,
    ):
        with pytest.raises(DamagedCheckpointError, match=says) as err:
            resolve_checkpoint(path)
        msg = str(err.value)
        assert f"{last / name} " in msg, msg  # the damaged file, by its path
        assert f"newest intact checkpoint is {newest}" in msg and "--resume step_00000002" in msg
    with pytest.raises(DamagedCheckpointError, match=name):
        load_checkpoint(tmp_path, make_model())  # never safetensors' own error
    assert resolve_checkpoint(newest) == newest and resolve_checkpoint(older) == older
    assert load_checkpoint(newest, make_model())["step"] == 2


def test_no_intact_checkpoint_left(tmp_path: Path) -> None:
    for path in _saved_steps(tmp_path, 1, 2):
        (path / STATE_FILE).write_text("{")
    with pytest.raises(DamagedCheckpointError, match="no intact checkpoint is beside it"):
        resolve_checkpoint(tmp_path)


def test_resolve_checkpoint_takes_a_run_its_checkpoints_or_one(tmp_path: Path) -> None:
    first, last = _saved_steps(tmp_path, 1, 2)
    assert resolve_checkpoint(tmp_path) == last.resolve()
    assert resolve_checkpoint(str(tmp_path / CHECKPOINTS_DIR)) == last.resolve()
    assert resolve_checkpoint(first) == first
    (tmp_path / "tensorboard").mkdir()
    with pytest.raises(FileNotFoundError, match="is not a checkpoint: pass a run dir"):
        resolve_checkpoint(tmp_path / "tensorboard")
    saved_model = tmp_path / "model"  # save_pretrained's folder: weights, no trainer state
    saved_model.mkdir()
    (saved_model / MODEL_FILE).write_bytes((last / MODEL_FILE).read_bytes())
    with pytest.raises(FileNotFoundError, match="is not a checkpoint"):
        resolve_checkpoint(saved_model)


def test_verifying_reads_the_header_not_the_data(tmp_path: Path) -> None:
    """A 4 GiB model file (sparse: never written) is checked by its header and size alone."""
    (path,) = _saved_steps(tmp_path, 1)
    header = json.dumps({"w": {"dtype": "F32", "shape": [2**30], "data_offsets": [0, 2**32]}})
    with open(path / MODEL_FILE, "wb") as f:
        f.write(len(header).to_bytes(8, "little") + header.encode())
        f.truncate(8 + len(header) + 2**32)
    assert resolve_checkpoint(path) == path
    with open(path / MODEL_FILE, "r+b") as f:
        f.truncate(8 + len(header) + 2**32 - 1)
    with pytest.raises(DamagedCheckpointError, match=f"declares {8 + len(header) + 2**32}"):
        resolve_checkpoint(path)

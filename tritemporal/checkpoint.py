"""Training checkpoints that resume a run exactly and that a kill can never corrupt.

Layout (file names are the module constants below)::

    run_dir/checkpoints/
      step_00000100/          step zero-padded to 8 digits
        model.safetensors     model.state_dict() (EMA teacher, heads, buffers, everything)
        optimizer.safetensors optimizer.state_dict()["state"] tensors as "state.<param_id>.<name>"
                              (AdamW's `step` keeps its dtype); tensors inside param_groups
                              or non-tensor state as "param_groups.<i>.<key>" / "nested.<id>..."
        trainer_state.json    {"format_version": 1, "step", "config", "param_groups" (null
                               without an optimizer), "optimizer_state": {"<param_id>":
                               {non-tensor state entries}},
                               "extra", "rng": {"python": random.getstate(), "numpy":
                               np.random.get_state() (as lists), "torch": hex of
                               torch.get_rng_state(), "cuda": [hex per device] or null}}
      last -> step_00000100   relative symlink, replaced atomically with os.replace

JSON has no tuples or tensors: tuples are written as lists and turned back into tuples where the
live optimizer's param_group has a tuple (betas); a tensor is {"__tensor__": "<safetensors key>"}.
A save writes into a hidden ``.tmp-step_XXXXXXXX-<pid>`` dir, fsyncs each file and the dir,
renames it into place (re-saving a step swaps the dirs with renameat2(RENAME_EXCHANGE) where the
OS has it), then swaps ``last``. A checkpoint is complete only if all three files exist; ``.tmp-*``
leftovers of a crash are ignored and removed by the next save. Pruning keeps the ``keep`` newest
numbered checkpoints plus ``last``'s target (keep=3 normally leaves 3; keep=0 only the target).

`resolve_checkpoint` is the one way from a path to a checkpoint (training's resume,
`load_checkpoint`, model loading). It checks that the checkpoint is intact without reading the
tensors: each safetensors file is exactly as long as its header declares, and the JSON parses.
A damaged one (a truncated or corrupt copy: saves themselves are atomic) is an error naming the
file and the newest intact checkpoint beside it, which is used only when asked for by name.

Under torchrun the format is the same, so a run saved by N processes resumes with M, DDP or
FSDP2: every process calls `save_checkpoint`, which gathers the whole model and optimizer state
onto rank 0 (`distributed.full_state_dicts`: optimizer ids as `Optimizer.state_dict()` numbers
them), rank 0 writes, and all return once the checkpoint is in place. `load_checkpoint` checks
the names on every process, reads the tensors on rank 0 only and broadcasts them; the RNG state
saved is rank 0's, restored on every process. The run directory must be one path every
process sees (a shared filesystem across nodes).
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.torch
import torch

from tritemporal.files import set_default_mode
from tritemporal.runtime import (
    barrier,
    full_state_dicts,
    is_main,
    load_full_state_dicts,
    world_size,
)

logger = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
LAST_LINK = "last"
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "trainer_state.json"
FORMAT_VERSION = 1
REQUIRED_FILES = (MODEL_FILE, OPTIMIZER_FILE, STATE_FILE)
_STEP_RE = re.compile(r"step_(\d{8,})")
_TMP_PREFIX = ".tmp-"


def _cpu_copy(t: torch.Tensor) -> torch.Tensor:
    """A detached, contiguous CPU copy with its own storage (safetensors refuses shared ones)."""
    return t.detach().to("cpu", copy=True).contiguous()


def _to_json(obj: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Make `obj` JSON-able: tensors go into `tensors` under `key`, tuples become lists."""
    if isinstance(obj, torch.Tensor):
        tensors[key] = _cpu_copy(obj)
        return {"__tensor__": key}
    if isinstance(obj, dict):
        return {str(k): _to_json(v, f"{key}.{k}", tensors) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_json(v, f"{key}.{i}", tensors) for i, v in enumerate(obj)]
    return obj


def _from_json(obj: Any, tensors: dict[str, torch.Tensor], like: Any = None) -> Any:
    """Undo `_to_json`; lists become tuples where the template `like` is a tuple."""
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]]
        sub = like if isinstance(like, dict) else {}
        return {k: _from_json(v, tensors, sub.get(k)) for k, v in obj.items()}
    if isinstance(obj, list):
        items = [_from_json(v, tensors) for v in obj]
        return tuple(items) if isinstance(like, tuple) else items
    return obj


def _rng_state() -> dict[str, Any]:
    """Python, numpy, torch CPU and (if available) CUDA generator states, JSON-able."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    cuda = None
    if torch.cuda.is_available():
        cuda = [s.numpy().tobytes().hex() for s in torch.cuda.get_rng_state_all()]
    return {
        "python": [version, list(internal), gauss],
        "numpy": [name, [int(k) for k in keys], int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state().numpy().tobytes().hex(),
        "cuda": cuda,
    }


def _set_rng_state(rng: dict[str, Any]) -> None:
    """Restore the generator states written by `_rng_state`."""
    version, internal, gauss = rng["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = rng["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.frombuffer(bytearray.fromhex(rng["torch"]), dtype=torch.uint8))
    if rng.get("cuda") and torch.cuda.is_available():
        n = torch.cuda.device_count()
        if len(rng["cuda"]) != n:
            logger.warning("CUDA RNG saved for %d devices, %d visible", len(rng["cuda"]), n)
        for i, s in enumerate(rng["cuda"][:n]):
            torch.cuda.set_rng_state(torch.frombuffer(bytearray.fromhex(s), dtype=torch.uint8), i)


def _fsync(path: Path) -> None:
    """fsync a file or directory."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with Linux renameat2(RENAME_EXCHANGE); False if unsupported."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _is_complete(path: Path) -> bool:
    """Whether `path` is a dir holding all three checkpoint files."""
    return path.is_dir() and all((path / f).is_file() for f in REQUIRED_FILES)


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete numbered checkpoints, oldest first."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _STEP_RE.fullmatch(p.name) and not p.is_symlink()]
    return sorted((p for p in found if _is_complete(p)), key=lambda p: int(p.name[5:]))


def find_last_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint `last` points to (resolved), or None if the run has none."""
    link = Path(run_dir) / CHECKPOINTS_DIR / LAST_LINK
    if link.is_symlink() and _is_complete(link):
        return link.resolve()
    done = list_checkpoints(run_dir)
    if done:  # `last` missing or dangling (manual deletion): fall back to the newest complete one
        logger.warning("%s is missing or incomplete; using %s", link, done[-1])
        return done[-1].resolve()
    return None


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    config: dict,
    keep: int = 3,
    extra: dict | None = None,
) -> Path:
    """Write checkpoints/step_XXXXXXXX atomically, point `last` at it, prune old numbered ones.

    Under torchrun every process calls it (the state is gathered from all); rank 0 writes.
    """
    if step < 0 or keep < 0:
        raise ValueError(f"save_checkpoint needs step >= 0 and keep >= 0, got {step=}, {keep=}")
    if world_size() == 1:
        weights = model.state_dict()
        sd = optimizer.state_dict() if optimizer is not None else None
        return _write(run_dir, step, weights, sd, config, keep, extra)
    weights, sd = full_state_dicts(model, optimizer)
    path = Path(run_dir) / CHECKPOINTS_DIR / f"step_{step:08d}"
    if is_main():
        path = _write(run_dir, step, weights, sd, config, keep, extra)
    barrier()  # no process goes on (or exits) before the checkpoint is complete
    return path


def _write(
    run_dir: str | Path,
    step: int,
    weights: dict[str, torch.Tensor],
    sd: dict | None,
    config: dict,
    keep: int,
    extra: dict | None,
) -> Path:
    """Write a model state dict and an `Optimizer.state_dict()` (or None) as checkpoint `step`."""
    opt_tensors: dict[str, torch.Tensor] = {}
    groups, opt_state = None, {}
    if sd is not None:
        for pid, entries in sd["state"].items():
            for name, value in entries.items():
                if isinstance(value, torch.Tensor):
                    opt_tensors[f"state.{pid}.{name}"] = _cpu_copy(value)
                else:
                    key = f"nested.{pid}.{name}"
                    opt_state.setdefault(str(pid), {})[name] = _to_json(value, key, opt_tensors)
        groups = [
            _to_json(g, f"param_groups.{i}", opt_tensors) for i, g in enumerate(sd["param_groups"])
        ]
    state = {
        "format_version": FORMAT_VERSION,
        "step": int(step),
        "config": config,
        "param_groups": groups,
        "optimizer_state": opt_state,
        "extra": extra or {},
        "rng": _rng_state(),
    }
    text = json.dumps(state, indent=2)  # fails (TypeError) before anything touches the disk
    model_tensors = {k: _cpu_copy(v) for k, v in weights.items()}

    root = Path(run_dir) / CHECKPOINTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    for p in root.iterdir():  # leftovers of a crashed save
        if p.name.startswith(_TMP_PREFIX):
            logger.info("removing leftover %s", p)
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink()
    name = f"step_{step:08d}"
    tmp, final = root / f"{_TMP_PREFIX}{name}-{os.getpid()}", root / name
    tmp.mkdir()
    safetensors.torch.save_file(model_tensors, str(tmp / MODEL_FILE))
    safetensors.torch.save_file(opt_tensors, str(tmp / OPTIMIZER_FILE))
    with open(tmp / STATE_FILE, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
    for fname in REQUIRED_FILES:
        set_default_mode(tmp / fname)  # safetensors writes 0600; the umask's mode, as open() gives
        _fsync(tmp / fname)
    _fsync(tmp)
    if not final.exists():
        os.rename(tmp, final)
    elif _exchange(tmp, final):  # re-save of the same step: `last` never sees a missing dir
        shutil.rmtree(tmp)
    else:  # no renameat2: a short window where final is missing (find_last falls back then)
        old = root / f"{_TMP_PREFIX}old-{name}-{os.getpid()}"
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old)
    _fsync(root)
    tmp_link = root / f"{_TMP_PREFIX}{LAST_LINK}-{os.getpid()}"
    os.symlink(name, tmp_link)
    os.replace(tmp_link, root / LAST_LINK)
    _fsync(root)
    _prune(root, keep)
    logger.info("saved checkpoint %s", final)
    return final


def _prune(root: Path, keep: int) -> None:
    """Delete numbered checkpoints beyond the `keep` newest, never `last`'s target."""
    target = (root / LAST_LINK).resolve()
    done = list_checkpoints(root.parent)
    for p in done[: max(len(done) - keep, 0)]:
        if p.resolve() != target:
            trash = root / f"{_TMP_PREFIX}del-{p.name}-{os.getpid()}"
            os.rename(p, trash)  # never leaves a half-deleted dir under a numbered name
            shutil.rmtree(trash)


class DamagedCheckpointError(ValueError):
    """A checkpoint file is truncated or corrupt; the message names it and an intact checkpoint."""


def _safetensors_damage(path: Path) -> str | None:
    """What is wrong with a safetensors file, from its header and size alone; None if nothing.

    The format is an 8-byte little-endian header length, a JSON header whose `data_offsets`
    cover the data that follows exactly, then the data: a truncated file is shorter than its
    header declares. Bit flips inside the data are not detected (that would read every byte).
    """
    size = path.stat().st_size
    if size < 8:
        return f"is {size} bytes: too short to be a safetensors file (truncated)"
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if 8 + n > size:
            return f"is {size} bytes but announces a {n}-byte header (truncated or corrupt)"
        try:
            header = json.loads(f.read(n))
            ends = [e["data_offsets"][1] for k, e in header.items() if k != "__metadata__"]
            declared = 8 + n + max(ends, default=0)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            return "has a header that is not safetensors JSON (corrupt or not a safetensors file)"
    if size < declared:
        return f"is {size} bytes but its header declares {declared} (truncated)"
    if size > declared:
        return f"is {size} bytes but its header declares {declared} (extra bytes: corrupt)"
    return None


def _damage(ckpt: Path) -> str | None:
    """'<file> <what is wrong>' for the first damaged file of a complete checkpoint, else None."""
    for name in (MODEL_FILE, OPTIMIZER_FILE):
        problem = _safetensors_damage(ckpt / name)
        if problem:
            return f"{ckpt / name} {problem}"
    try:
        json.loads((ckpt / STATE_FILE).read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        return f"{ckpt / STATE_FILE} is not valid JSON ({e}; truncated?)"
    return None


def _check_intact(ckpt: Path) -> Path:
    """`ckpt` if its files are intact; else raise naming the damaged file and the newest
    intact checkpoint beside it."""
    real = ckpt.resolve()  # damage is reported under the step's name, not `last`'s
    problem = _damage(real)
    if problem is None:
        return ckpt
    root = real.parent
    others = list_checkpoints(root.parent) if root.name == CHECKPOINTS_DIR else []
    newer_first = (p for p in reversed(others) if p.resolve() != real)
    intact = next((p for p in newer_first if _damage(p) is None), None)
    if intact is None:
        advice = f"no intact checkpoint is beside it in {root}: restore the file from a copy"
    else:
        advice = (
            f"the newest intact checkpoint is {intact}: load that folder instead, or continue "
            f"training from it with `tritemporal train ... --resume {intact.name}` (or restore "
            f"the damaged file from a copy to keep the later steps)"
        )
    raise DamagedCheckpointError(f"damaged checkpoint: {problem}; {advice}")


def resolve_checkpoint(path: str | Path) -> Path:
    """The intact checkpoint dir meant by a run dir or checkpoints/ dir (its `last`) or a
    checkpoint dir (itself); a clear error when there is none or its files are damaged."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if (path / STATE_FILE).exists() or (path / OPTIMIZER_FILE).exists():  # a model folder: neither
        missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
        if missing:
            raise FileNotFoundError(
                f"checkpoint {path} is incomplete: missing {', '.join(missing)} (a checkpoint "
                f"dir holds {', '.join(REQUIRED_FILES)}); pass another one or its run dir"
            )
        return _check_intact(path)
    if (path / CHECKPOINTS_DIR).is_dir():
        run_dir = path
    elif path.name == CHECKPOINTS_DIR and path.is_dir():
        run_dir = path.parent
    else:
        raise FileNotFoundError(
            f"{path} is not a checkpoint: pass a run dir, its {CHECKPOINTS_DIR}/ dir or a "
            f"checkpoint dir holding {', '.join(REQUIRED_FILES)}"
        )
    found = find_last_checkpoint(run_dir)
    if found is None:
        raise FileNotFoundError(
            f"run dir {run_dir} has no complete checkpoint: expected "
            f"{run_dir / CHECKPOINTS_DIR}/{LAST_LINK} -> step_XXXXXXXX holding "
            f"{', '.join(REQUIRED_FILES)}"
        )
    return _check_intact(found)


def load_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    restore_rng: bool = True,
) -> dict:
    """Load weights (+ optimizer, RNG) from a checkpoint or a run dir's last; return its state.

    Under torchrun every process calls it with its wrapped model (DDP or FSDP2).
    """
    ckpt = resolve_checkpoint(path)
    state = json.loads((ckpt / STATE_FILE).read_text(encoding="utf-8"))
    if state.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{ckpt}: format_version {state.get('format_version')} is not supported")
    with safetensors.safe_open(str(ckpt / MODEL_FILE), framework="pt") as f:
        names = set(f.keys())  # the header only: every process checks, rank 0 reads tensors
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - names), sorted(names - expected)
    hint = "the config likely differs from the run that wrote it"
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {ckpt} does not match the model ({hint}): "
            f"{len(missing)} missing keys {missing[:5]}, {len(unexpected)} unexpected keys "
            f"{unexpected[:5]}"
        )
    if optimizer is not None and state["param_groups"] is None:
        raise ValueError(f"checkpoint {ckpt} was saved without optimizer state")
    if world_size() > 1:  # rank 0 reads, then broadcasts into every process's part
        weights, opt = {}, {}
        if is_main():
            weights = safetensors.torch.load_file(str(ckpt / MODEL_FILE), device="cpu")
            opt = _read_optimizer(ckpt, state, optimizer) if optimizer is not None else None
        try:
            load_full_state_dicts(model, optimizer, weights, opt)
        except (ValueError, RuntimeError, KeyError, IndexError) as e:
            raise ValueError(
                f"checkpoint {ckpt} does not fit the model or its optimizer ({hint}): {e}"
            ) from e
    else:
        first = next(iter(model.parameters()), None)
        first = first if first is not None else next(iter(model.buffers()), None)
        device = str(first.device) if first is not None else "cpu"
        weights = safetensors.torch.load_file(str(ckpt / MODEL_FILE), device=device)
        try:
            model.load_state_dict(weights, strict=True)
        except RuntimeError as e:
            raise ValueError(f"checkpoint {ckpt} does not match the model ({hint}): {e}") from e
        if optimizer is not None:
            try:
                optimizer.load_state_dict(_read_optimizer(ckpt, state, optimizer))
            except (ValueError, RuntimeError, KeyError) as e:
                raise ValueError(
                    f"checkpoint {ckpt}: optimizer state does not fit ({hint}): {e}"
                ) from e
    if restore_rng:
        _set_rng_state(state["rng"])
    logger.info("loaded checkpoint %s (step %d)", ckpt, state["step"])
    return state


def _read_optimizer(ckpt: Path, state: dict, optimizer: torch.optim.Optimizer) -> dict:
    """The `Optimizer.state_dict()` saved in `ckpt`, tuples restored where `optimizer` has them."""
    tensors = safetensors.torch.load_file(str(ckpt / OPTIMIZER_FILE), device="cpu")
    opt: dict[int, dict[str, Any]] = {}
    for key, t in tensors.items():
        if key.startswith("state."):
            _, pid, name = key.split(".", 2)
            opt.setdefault(int(pid), {})[name] = t
    for pid, entries in state["optimizer_state"].items():
        opt.setdefault(int(pid), {}).update(_from_json(entries, tensors))
    live = optimizer.param_groups
    groups = [
        _from_json(g, tensors, live[i] if i < len(live) else None)
        for i, g in enumerate(state["param_groups"])
    ]
    return {"state": dict(sorted(opt.items())), "param_groups": groups}

"""Resumable training state in safetensors and JSON (never pickle).

One saved state is a folder ``<root>/step-000012/`` (after 12 optimizer updates):

    trainable.safetensors  the trainable parameters by name: every parameter for full
                           fine-tuning, the LoRA adapters with --lora (the frozen base is reloaded)
    optimizer.safetensors  "<parameter name>/<key>" for every tensor of the optimizer state
                           (AdamW: step, exp_avg, exp_avg_sq)
    extra.safetensors      "rng/torch", "rng/cuda/<i>" (uint8 RNG states) and "array/<name>"
                           (float64 arrays the loop keeps between steps, e.g. online losses)
    state.json             the step and the loop's JSON-able scalars; written last

The folder is written under a temporary name and renamed, so a state folder that exists is
complete; ``save_state`` then removes older states. The learning-rate schedule needs no state
(it is a function of the step) and neither does the data position (``schedule.Plan.batch``).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from proxysel.store.atomic import TMP_PREFIX, fsync_dir

FORMAT = 1
_STEP_RE = re.compile(r"^step-(\d{6,})$")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_tensors(path: Path, tensors: dict[str, Any]) -> None:
    """Write name -> tensor to a safetensors file (detached, contiguous, on the CPU) and fsync it."""
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path))
    _fsync(path)


def _optimizer_names(model: Any, optimizer: Any) -> list[str]:
    """Parameter names in the optimizer's own order (the integer keys of its state_dict)."""
    name_of = {id(p): n for n, p in model.named_parameters()}
    return [name_of[id(p)] for group in optimizer.param_groups for p in group["params"]]


def trainable_parameters(model: Any) -> dict[str, Any]:
    """name -> parameter for every parameter with requires_grad (tied weights appear once)."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def save_state(root: str | os.PathLike[str], step: int, model: Any, optimizer: Any, *,
               arrays: dict[str, np.ndarray] | None = None, meta: dict[str, Any] | None = None) -> Path:
    """Write the state after ``step`` updates to ``root/step-XXXXXX`` and drop older ones."""
    import torch

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:06d}"
    tmp = root / f"{TMP_PREFIX}{final.name}.{secrets.token_hex(6)}"
    tmp.mkdir()
    try:
        save_tensors(tmp / "trainable.safetensors", trainable_parameters(model))
        opt: dict[str, Any] = {}
        state = optimizer.state_dict()["state"]
        for i, name in enumerate(_optimizer_names(model, optimizer)):
            for key, value in state.get(i, {}).items():
                opt[f"{name}/{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
        save_tensors(tmp / "optimizer.safetensors", opt)
        extra: dict[str, Any] = {"rng/torch": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            for i, s in enumerate(torch.cuda.get_rng_state_all()):
                extra[f"rng/cuda/{i}"] = s
        for name, arr in (arrays or {}).items():
            extra[f"array/{name}"] = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float64))
        save_tensors(tmp / "extra.safetensors", extra)
        (tmp / "state.json").write_text(json.dumps({"format": FORMAT, "step": step, **(meta or {})},
                                                   sort_keys=True, indent=1) + "\n")
        _fsync(tmp / "state.json")
        fsync_dir(tmp)
        if final.exists():  # the same step saved before a crash: the new copy is identical
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in root.iterdir():
        m = _STEP_RE.match(old.name)
        if (m and int(m.group(1)) != step) or old.name.startswith(TMP_PREFIX):
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest_state(root: str | os.PathLike[str]) -> Path | None:
    """The saved state with the highest step under ``root``, or None."""
    root = Path(root)
    if not root.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in root.iterdir()
             if (m := _STEP_RE.match(p.name)) and (p / "state.json").is_file()]
    return max(found)[1] if found else None


def load_state(folder: str | os.PathLike[str], model: Any,
               optimizer: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Restore parameters, optimizer and RNG from ``folder``; returns (state.json, arrays).

    ``model`` and ``optimizer`` must be built exactly as when the state was saved (same model,
    same LoRA setup, same parameter groups); a mismatch raises ValueError naming the parameter.
    """
    import torch
    from safetensors.torch import load_file

    folder = Path(folder)
    meta = json.loads((folder / "state.json").read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{folder}: training state format {meta.get('format')}, expected {FORMAT}")
    saved = load_file(str(folder / "trainable.safetensors"))
    params = trainable_parameters(model)
    if set(saved) != set(params):
        missing, extra = sorted(set(params) - set(saved)), sorted(set(saved) - set(params))
        raise ValueError(f"{folder}: the saved parameters do not match the model "
                         f"(missing {missing[:5]}, unexpected {extra[:5]})")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(saved[name])
    opt = load_file(str(folder / "optimizer.safetensors"))
    per_param: dict[int, dict[str, Any]] = {}
    for i, name in enumerate(_optimizer_names(model, optimizer)):
        prefix = f"{name}/"
        entry = {k[len(prefix):]: v for k, v in opt.items() if k.startswith(prefix)}
        if entry:
            per_param[i] = entry
    sd = optimizer.state_dict()
    optimizer.load_state_dict({"state": per_param, "param_groups": sd["param_groups"]})
    extra = load_file(str(folder / "extra.safetensors"))
    torch.set_rng_state(extra["rng/torch"])
    cuda_keys = sorted((k for k in extra if k.startswith("rng/cuda/")),
                       key=lambda k: int(k.rsplit("/", 1)[1]))
    cuda = [extra[k] for k in cuda_keys]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    arrays = {k[len("array/"):]: v.numpy() for k, v in extra.items() if k.startswith("array/")}
    return meta, arrays

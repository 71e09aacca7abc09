"""Load a causal LM and its tokenizer from a bundled name, a ``.gguf`` file, a local folder or a hub id.

GGUF files are dequantized to float once and cached as safetensors under ``cache_dir()/models``,
so the second load takes about a second instead of 20-40 s. Remote code never runs unless
``trust_remote_code=True``; weights are read from safetensors (or GGUF) only, unless
``allow_pickle=True``, which then loads ``.bin`` files with ``weights_only``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxysel.errors import UsageError
from proxysel.models.bundled import BUNDLED, bundled_path, cache_dir
from proxysel.store.atomic import atomic_write_json

log = logging.getLogger(__name__)

DTYPES = ("float32", "bfloat16", "float16")


@dataclass
class LoadedModel:
    """A model ready for scoring or training.

    model_id: what the user asked for (bundled name, path or hub id).
    revision: a content hash of the weights (sha256 prefix), recorded in stage fingerprints.
    """

    model: Any  # transformers.PreTrainedModel
    tokenizer: Any  # transformers.PreTrainedTokenizerBase
    model_id: str
    revision: str
    path: str


def _require_torch():
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise UsageError(
            f"this needs the model stack ({e.name} is missing): pip install 'proxysel[models]' torch==2.13.0"
        ) from e


def cpu_bf16_native() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX, oneDNN's probe).

    Without it torch emulates bf16 on the CPU: a 256 x 576 x 1536 matmul took 0.72 s in bf16
    against 0.019 s in float32 on an AVX2 AMD EPYC (torch 2.13.0, one thread), about 38x slower.
    False where torch is missing or too old to have the probe.
    """
    try:
        import torch

        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # no torch, or a torch without the probe: be safe
        return False


def warn_if_emulated_bf16(dtype: str, device: Any) -> None:
    """Log a warning when ``dtype`` is bfloat16 on a CPU that emulates it (``cpu_bf16_native``)."""
    if dtype == "bfloat16" and str(device).startswith("cpu") and not cpu_bf16_native():
        log.warning("bfloat16 on this CPU is emulated (no AVX-512 BF16 or AMX): expect it tens of times "
                    "slower than float32 (docs/signals.md); use float32 here")


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


def stamped_sha256(path: Path) -> str:
    """``file_sha256(path)``, hashed once per version of the file.

    The hash is kept beside the model cache (``cache_dir()/hashes``) with the file's size, mtime
    and inode; a later call (a later process) whose file still has all three reuses it instead of
    reading the whole file again (98 MB for SmolLM2, 253 MB for Gemma3 on every start). A file
    rewritten in place with the same size and mtime would keep its old hash, as with make and
    rsync. An unwritable cache only costs the re-hashing.
    """
    path = path.resolve()
    st = path.stat()
    stamp = {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}
    key = json.dumps(stamp, sort_keys=True)
    if key in _SHA_MEMO:
        return _SHA_MEMO[key]
    where = cache_dir() / "hashes" / f"{path.stem}-{hashlib.sha256(str(path).encode()).hexdigest()[:16]}.json"
    try:
        saved = json.loads(where.read_text())
        sha = saved["sha256"] if {k: saved.get(k) for k in stamp} == stamp else None
    except (OSError, ValueError, KeyError, TypeError):
        sha = None
    if sha is None:
        sha = file_sha256(path)
        try:
            where.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(where, {**stamp, "sha256": sha})
        except OSError as e:
            log.debug("cannot keep the hash of %s in %s: %s", path, where, e)
    _SHA_MEMO[key] = sha
    return sha


_SHA_MEMO: dict[str, str] = {}  # stamp -> sha256 of the files this process has hashed


def folder_revision(folder: Path) -> str:
    """A hash of a model folder: config plus the names, sizes and leading bytes of its weight files."""
    h = hashlib.sha256()
    for p in sorted(folder.iterdir()):
        if p.is_file() and (p.suffix in {".json", ".safetensors", ".bin", ".model", ".txt"}):
            h.update(p.name.encode())
            h.update(str(p.stat().st_size).encode())
            with open(p, "rb") as f:
                h.update(f.read(1 << 20))
    return h.hexdigest()[:16]


def dequantized_dir(gguf_file: Path) -> tuple[Path, str]:
    """Return the cached safetensors folder for a GGUF file, creating it on first use."""
    sha = stamped_sha256(gguf_file)
    out = cache_dir() / "models" / f"{gguf_file.stem}-{sha[:16]}"
    if (out / "COMPLETE").exists():
        return out, sha[:16]
    _require_torch()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    log.info("dequantizing %s once into %s (later loads take about a second)", gguf_file, out)
    tmp = out.with_name(f".tmp-{out.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tok = AutoTokenizer.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf_file.parent), gguf_file=gguf_file.name, dtype=torch.float32,
        quantization_config=GgufConfig(dequantize=True))
    # The quantizer must be cleared before save_pretrained will write plain float weights.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    (tmp / "COMPLETE").write_text(json.dumps({"gguf": str(gguf_file), "sha256": sha}) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out, sha[:16]


def resolve_model_path(spec: str) -> tuple[Path | str, str]:
    """Map a model spec to (local folder or hub id, revision)."""
    if spec in BUNDLED:
        if BUNDLED[spec].kind != "causal-lm":
            raise UsageError(f"{spec!r} is an embedder, not a causal LM")
        return dequantized_dir(bundled_path(spec))
    p = Path(spec).expanduser()
    if p.suffix == ".gguf":
        if not p.is_file():
            raise UsageError(f"model file not found: {p}")
        return dequantized_dir(p)
    if p.is_dir():
        return p, folder_revision(p)
    if p.exists():
        raise UsageError(f"--model {spec}: a file that is not .gguf; give a model folder, a .gguf file, "
                         f"a hub id or one of {sorted(BUNDLED)}")
    if spec.startswith((".", "/", "~")):
        raise UsageError(f"model folder not found: {spec}")
    return spec, "hub"


def load_tokenizer(path: Path | str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    if tok.pad_token_id is None:
        # Padding positions are always masked (labels -100, attention 0), so any id works;
        # eos is the conventional choice.
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.convert_ids_to_tokens(0)
    return tok


def load_causal_lm(spec: str, *, dtype: str = "float32", device: str = "cpu",
                   trust_remote_code: bool = False, allow_pickle: bool = False) -> LoadedModel:
    """Load ``spec`` for inference or training.

    spec: a bundled name (``smollm2-135m``, ``gemma3-270m``), a ``.gguf`` file, a local folder
    with safetensors weights, or a Hugging Face hub id (needs the hub or its local cache).
    dtype: ``float32`` (default on CPU), ``bfloat16`` or ``float16``; weights are cast to it.
    """
    _require_torch()
    import torch
    from transformers import AutoModelForCausalLM

    if dtype not in DTYPES:
        raise UsageError(f"--dtype must be one of {DTYPES}, got {dtype!r}")
    warn_if_emulated_bf16(dtype, device)
    path, revision = resolve_model_path(spec)
    if isinstance(path, Path) and not allow_pickle:
        has_st = any(path.glob("*.safetensors"))
        has_pickle = any(path.glob("*.bin")) or any(path.glob("*.pt"))
        if not has_st and has_pickle:
            raise UsageError(f"{path} has only pickle weights (.bin/.pt); they can run code when loaded. "
                             "Convert them to safetensors, or pass --allow-pickle to load them "
                             "with weights_only.")
    try:
        tok = load_tokenizer(path, trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            str(path), dtype=getattr(torch, dtype), trust_remote_code=trust_remote_code,
            use_safetensors=None if allow_pickle else True)
    except OSError as e:
        raise UsageError(f"cannot load model {spec!r}: {e}. Offline, use a local folder, a .gguf file "
                         f"or a bundled name: {sorted(BUNDLED)}") from e
    except pickle.UnpicklingError as e:  # weights_only refused an object that is not a tensor
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        why = next((ln for ln in lines if "GLOBAL" in ln), lines[0] if lines else type(e).__name__)
        raise UsageError(f"refusing the pickle weights of {spec!r}: they hold objects other than tensors, "
                         f"which could run code when loaded (torch.load with weights_only: {why}). Get "
                         "safetensors weights from a source you trust.") from None
    model.to(device)
    model.eval()
    return LoadedModel(model=model, tokenizer=tok, model_id=spec, revision=revision, path=str(path))

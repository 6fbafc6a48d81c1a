"""A merged model: the base with the LoRA adapter folded in, in the dtype asked for, loadable with plain transformers.

- "unsloth" backend (CUDA): Unsloth's own merged save, `model.save_pretrained_merged(OUT, processor,
  save_method="merged_16bit", dtype=...)`, which dequantizes a 4-bit base first and writes the
  weights in the dtype asked for (without `dtype` it keeps the base checkpoint's: float16 came out
  bf16); its arguments come from `unsloth_merged_save_kwargs`, checked against the installed
  unsloth's signature in the tests.
- "transformers" backend (CPU, CI): PEFT's `merge_and_unload()` on the full-precision base, cast to
  the requested dtype and saved with `save_pretrained`.

Written under a staging directory beside OUT and renamed into place: OUT is whole or absent.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile

from training.errors import UserError

log = logging.getLogger("training")

DTYPES = ("bfloat16", "float16", "float32")
UNSLOTH_SAVE_METHOD = "merged_16bit"


def unsloth_merged_save_kwargs(out_dir: str, processor, dtype: str) -> dict:
    """Arguments of Unsloth's save_pretrained_merged for a merge into `out_dir`, in `dtype` (one of
    DTYPES). Its merge casts with `.to(dtype)`, so a torch dtype, not the name; safe_serialization
    None pins safetensors, which its default trades for a pickle on a host with at most 2 CPUs."""
    import torch

    return dict(save_directory=out_dir, tokenizer=processor, save_method=UNSLOTH_SAVE_METHOD,
                dtype=getattr(torch, dtype), safe_serialization=None)


def export_merged(adapter_dir: str, out_dir: str, dtype: str = "bfloat16") -> str:
    """Merge the adapter in `adapter_dir` (final/ or a checkpoint) into its base and write OUT."""
    from training.checkpointing.save import move_into_place
    from training.model.inference import load_trained
    from training.model.loading import UNSLOTH, cuda_available, prepare_backend, select_backend, unsloth_installed
    from training.run_config import saved_config

    if dtype not in DTYPES:
        raise UserError(f"--dtype {dtype}: must be one of {', '.join(DTYPES)}")
    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir) and (not os.path.isdir(out_dir) or os.listdir(out_dir)):
        raise UserError(f"--merged {out_dir}: already exists; remove it or choose another directory")
    config = saved_config(adapter_dir)
    if config is None:
        raise UserError(f"{adapter_dir}: no training_config.json or harness_state.json; give an output_dir's "
                        "final/ or a checkpoint-<step>/")
    backend = select_backend(config, cuda_available(), unsloth_installed())
    prepare_backend(backend)  # unsloth before transformers and peft, as in train.py and evaluate.py
    loaded = load_trained(adapter_dir, config, backend)
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}-export-", dir=parent)
    try:
        if backend == UNSLOTH:
            loaded.model.save_pretrained_merged(**unsloth_merged_save_kwargs(staging, loaded.processor, dtype))
        else:
            _merge_with_peft(loaded.model, dtype).save_pretrained(staging)
            loaded.processor.save_pretrained(staging)
        if os.path.isdir(out_dir):
            os.rmdir(out_dir)  # empty, checked above
        move_into_place(staging, out_dir, f"{staging}-old")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(f"{staging}-old", ignore_errors=True)
    log.info("merged %s (backend %s) into %s", adapter_dir, backend, out_dir)
    return out_dir


def _merge_with_peft(model, dtype: str):
    import torch

    merged = model.merge_and_unload()  # the adapter's deltas (and modules_to_save) folded into the base
    return merged.to(getattr(torch, dtype))

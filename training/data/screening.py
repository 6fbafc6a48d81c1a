"""Which samples of a table split are usable. A bad row (image missing, corrupt or unreadable; a
transcription that is empty, null, or longer than max_target_tokens) is skipped when the data is
loaded, before training, with a warning naming it and why; the counts go to the log,
metrics.jsonl and W&B. Only when more than max_bad_sample_fraction of a split is bad does the run
stop (exit 2): without this, the first bad sample crashed training mid-run, and every restart
crashed on the same one.

The rendered synthetic set is ours and is not screened."""

from __future__ import annotations

import logging
from collections.abc import Callable

from training.errors import UserError

log = logging.getLogger("training")
SHOWN = 50  # bad samples named in the log, one line each; the rest are counted


def screen(split, name: str, count_tokens: Callable[[str], int], max_target_tokens: int) -> tuple[list[int], list[tuple[str, str]]]:
    """(indices of the usable samples of `split`, [(sample, why)] for the others)."""
    kept, bad = [], []

    def label(index: int) -> str:  # looked up for the bad samples only
        return split.describe(index) if hasattr(split, "describe") else f"{name}/{index}"

    for index in range(len(split)):
        try:
            sample = split[index]
        except FileNotFoundError as error:
            bad.append((label(index), f"missing image ({error.filename or error})"))
            continue
        except Exception as error:  # PIL's UnidentifiedImageError, truncated files, bad bytes
            bad.append((label(index), f"unreadable image ({type(error).__name__}: {error})"))
            continue
        text = sample["text"]
        if text is None or not str(text).strip():
            bad.append((label(index), "empty transcription"))
        elif max_target_tokens > 0 and (tokens := count_tokens(text)) > max_target_tokens:
            bad.append((label(index), f"transcription of {tokens} tokens, longer than max_target_tokens={max_target_tokens}"))
        else:
            kept.append(index)
    return kept, bad


def check_share(name: str, total: int, bad: list[tuple[str, str]], max_fraction: float) -> None:
    """Log each bad sample; raise UserError when more than `max_fraction` of the split is bad."""
    for label, why in bad[:SHOWN]:
        log.warning("skipping %s sample %s: %s", name, label, why)
    if len(bad) > SHOWN:
        log.warning("... and %d more bad %s samples", len(bad) - SHOWN, name)
    if bad:
        log.warning("skipped %d of %d %s samples", len(bad), total, name)
    if total and len(bad) / total > max_fraction:
        raise UserError(f"dataset: {len(bad)} of {total} {name} samples ({len(bad) / total:.0%}) are bad, more than "
                        f"max_bad_sample_fraction={max_fraction:g} (first: {bad[0][0]}: {bad[0][1]}); fix or remove "
                        "them, or raise max_bad_sample_fraction")

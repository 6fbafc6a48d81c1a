"""The highest-loss eval samples of each evaluation, on disk for offline runs:
output_dir/worst_samples/step-<N>.jsonl, with each image as step-<N>-<rank>.png beside it."""

from __future__ import annotations

import dataclasses
import json
import os

from training.evaluation.scoring import SampleResult

WORST_DIR = "worst_samples"


def write_worst_samples(output_dir: str, step: int, results: list[SampleResult], images: dict) -> str:
    folder = os.path.join(output_dir, WORST_DIR)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"step-{step}.jsonl")
    with open(path, "w", encoding="utf-8") as out:
        for rank, result in enumerate(results, start=1):
            image_file = f"step-{step}-{rank}.png"
            if result.key in images:
                images[result.key].save(os.path.join(folder, image_file))
            out.write(json.dumps({"step": step, "rank": rank, "image": image_file, **dataclasses.asdict(result)}) + "\n")
    return path

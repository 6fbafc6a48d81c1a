"""Score a trained adapter (the command; the logic is training.evaluation.evaluate).

    python training/evaluate.py --model outputs/checkpoints/my-exp/final
    python training/evaluate.py --model outputs/checkpoints/my-exp/checkpoint-300 --split validation --limit 100
    python training/evaluate.py --model oilco/my-exp     # published on the Hub (HF_TOKEN if private)
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repository root in place of training/ (whose
    sys.path[0] = str(Path(__file__).resolve().parent.parent)  # packages would shadow runpod, secrets...)

from training.evaluation.evaluate import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

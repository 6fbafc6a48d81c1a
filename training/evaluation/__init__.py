"""Scoring a trained adapter: the evaluate.py command's logic and what the trainer's evaluations share.

- evaluate.py       `python training/evaluate.py` (CER/WER/exact match on a split); the test-split score of a card
- generation.py     greedy transcription in batches, bounded by the longest reference
- scoring.py        CER, WER, exact match and per-sample losses
- worst_samples.py  the highest-loss samples of each evaluation, on disk
"""

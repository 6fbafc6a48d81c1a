"""The model: the backend (Unsloth on CUDA, else transformers + PEFT), loading it, the offline stand-in.

- backends.py   the backend names and what each implies (optimizer, dtype)
- loading.py    building the model and processor for training
- inference.py  a trained adapter on its base, for evaluation and export
- export.py     the adapter merged into its base, for serving (the export command)
- standin.py    the miniature Qwen3-VL built locally (no Hub)
"""

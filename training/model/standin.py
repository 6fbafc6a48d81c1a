"""The offline stand-in model: a miniature Qwen3-VL with a locally trained tokenizer.

Same classes, processor and chat-template tokens as `Qwen/Qwen3-VL-2B-Instruct`, scaled down
so it trains on a laptop CPU in seconds. Built once from a fixed seed and cached on disk;
`model_name="standin:qwen3-vl-mini"` selects it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

STANDIN_PREFIX = "standin:"
STANDIN_NAME = "standin:qwen3-vl-mini"
# Bump when anything below changes what gets built, so old caches are not reused.
BUILD_VERSION = 1

SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|image_pad|>", "<|video_pad|>",
]
# Qwen's chat layout: each turn framed by <|im_start|>role ... <|im_end|>, images as
# <|vision_start|><|image_pad|><|vision_end|> (the processor expands <|image_pad|>).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
VOCAB_SIZE = 1024
# Pixel bounds for the image processor: the synthetic 640x320 headers become 256x128,
# 128 vision patches merged into 32 image tokens.
MIN_PIXELS = 128 * 64
MAX_PIXELS = 256 * 128
TEXT = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=32, max_position_embeddings=2048)
VISION = dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=4, patch_size=16,
              spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=256,
              deepstack_visual_indexes=[1])
BUILD_SEED = 1234


def is_standin(model_name: str) -> bool:
    return model_name.startswith(STANDIN_PREFIX)


def cache_root() -> Path:
    base = os.environ.get("WELL_LOG_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "well-log-harness")
    return Path(base)


def _fingerprint() -> str:
    recipe = json.dumps([BUILD_VERSION, SPECIAL_TOKENS, CHAT_TEMPLATE, VOCAB_SIZE, MIN_PIXELS,
                         MAX_PIXELS, TEXT, VISION, BUILD_SEED], sort_keys=True)
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def standin_path(model_name: str = STANDIN_NAME) -> Path:
    """The cached stand-in directory, built on first use (safe with concurrent builders)."""
    if model_name != STANDIN_NAME:
        raise ValueError(f"unknown stand-in {model_name!r}; the only one is {STANDIN_NAME!r}")
    target = cache_root() / f"qwen3-vl-mini-{_fingerprint()}"
    if (target / "config.json").exists():
        return target
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not (target / "config.json").exists():
            staging = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
            try:
                build(staging)
                staging.rename(target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    return target


def build_tokenizer():
    """A byte-level BPE tokenizer trained on synthetic transcriptions, with Qwen's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from training.data.synthetic import corpus

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    prompts = ["Transcribe this well log header exactly.", "user", "assistant", "system"]
    tok.train_from_iterator(corpus(samples=1500) + prompts * 50, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        unk_token=None, model_max_length=4096, padding_side="right",
    )


def build_processor():
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    tokenizer = build_tokenizer()
    image_processor = Qwen2VLImageProcessor(
        patch_size=VISION["patch_size"], merge_size=VISION["spatial_merge_size"],
        temporal_patch_size=VISION["temporal_patch_size"], min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS,
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
    )
    video_processor = Qwen3VLVideoProcessor(
        patch_size=VISION["patch_size"], merge_size=VISION["spatial_merge_size"],
        temporal_patch_size=VISION["temporal_patch_size"],
    )
    return Qwen3VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                            video_processor=video_processor, chat_template=CHAT_TEMPLATE)


def build_model(tokenizer):
    import torch
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = Qwen3VLConfig(
        text_config=dict(TEXT, vocab_size=len(tokenizer), pad_token_id=ids["<|endoftext|>"],
                         bos_token_id=ids["<|im_start|>"], eos_token_id=ids["<|im_end|>"],
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                          "mrope_section": [4, 6, 6], "mrope_interleaved": True}),
        vision_config=dict(VISION, out_hidden_size=TEXT["hidden_size"]),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):  # building must not move the caller's RNG
        torch.manual_seed(BUILD_SEED)
        model = Qwen3VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    return model


def build(directory: Path) -> None:
    """Write a complete stand-in (weights, config, processor) into `directory`."""
    processor = build_processor()
    model = build_model(processor.tokenizer)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)

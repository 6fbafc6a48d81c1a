"""The synthetic well-log header set: deterministic, realistic, split apart."""

from __future__ import annotations

import re

from training.data import synthetic
from training.data.sources import SyntheticSplit


def test_same_sample_every_time():
    a, b = SyntheticSplit("train", 10)[3], SyntheticSplit("train", 10)[3]
    assert a["text"] == b["text"]
    assert a["image"].tobytes() == b["image"].tobytes()


def test_fields_look_like_a_log_header():
    record = synthetic.sample_record(0, "train", 7)
    state_code = synthetic.STATES[record.state][0]
    assert re.fullmatch(rf"{state_code}-\d{{3}}-\d{{5}}", record.api_number)
    assert record.county in synthetic.STATES[record.state][1]
    kb, gl = int(record.elevation_kb.split()[0]), int(record.elevation_gl.split()[0])
    assert kb > gl
    assert re.fullmatch(r"\d\d/\d\d/\d{4}", record.log_date)
    lines = record.transcription().splitlines()
    assert [line.split(":")[0] for line in lines] == [label for label, _ in synthetic.FIELDS]


def test_splits_differ_and_samples_are_distinct():
    train = {synthetic.sample_record(0, "train", i).transcription() for i in range(200)}
    test = {synthetic.sample_record(0, "test", i).transcription() for i in range(200)}
    assert len(train) == 200 and len(test) == 200
    assert not train & test


def test_image_is_rgb_of_fixed_size():
    image = SyntheticSplit("validation", 5)[0]["image"]
    assert image.mode == "RGB" and image.size == synthetic.IMAGE_SIZE

"""Synthetic well-log headers: rendered images with their exact transcription.

Every sample is a pure function of (seed, split, index), so a subset, a resumed run
or another machine sees the same header, and nothing is rendered until it is asked for.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFilter, ImageFont

SPLIT_SIZES = {"train": 2000, "validation": 200, "test": 200}
IMAGE_SIZE = (640, 320)

# API state codes as the API numbering standard assigns them, with counties and fields
# that really lie in each state, so transcriptions look like the headers users send.
STATES = {
    "TEXAS": ("42", ["MIDLAND", "ECTOR", "REEVES", "KARNES", "LOVING", "UPTON", "ANDREWS"],
              ["SPRABERRY TREND", "WOLFBONE", "EAGLE FORD", "WOLFCAMP", "FUHRMAN-MASCHO"]),
    "OKLAHOMA": ("35", ["KINGFISHER", "GARVIN", "CANADIAN", "GRADY", "CADDO"],
                 ["SOONER TREND", "GOLDEN TREND", "SCOOP", "STACK", "ANADARKO BASIN"]),
    "NEW MEXICO": ("30", ["LEA", "EDDY", "SAN JUAN", "CHAVES"],
                   ["PERMIAN BASIN", "BLANCO MESAVERDE", "LOCO HILLS", "MALJAMAR"]),
    "NORTH DAKOTA": ("33", ["MCKENZIE", "WILLIAMS", "MOUNTRAIL", "DUNN"],
                     ["BAKKEN", "SANISH", "PARSHALL", "BLUE BUTTES"]),
    "COLORADO": ("05", ["WELD", "GARFIELD", "LA PLATA", "RIO BLANCO"],
                 ["WATTENBERG", "PICEANCE", "IGNACIO BLANCO", "RANGELY"]),
    "WYOMING": ("49", ["CAMPBELL", "CONVERSE", "SUBLETTE", "NATRONA"],
                ["POWDER RIVER", "PINEDALE", "JONAH", "SALT CREEK"]),
    "LOUISIANA": ("17", ["CADDO", "DE SOTO", "LAFOURCHE", "CALCASIEU"],
                  ["HAYNESVILLE", "CADDO PINE ISLAND", "GOLDEN MEADOW", "LAKE CHARLES"]),
}
OPERATORS = [
    "PIONEER NATURAL RESOURCES", "DEVON ENERGY CORP", "CONTINENTAL RESOURCES INC",
    "EOG RESOURCES INC", "OXY USA INC", "MARATHON OIL CO", "APACHE CORP",
    "CHESAPEAKE OPERATING INC", "HESS BAKKEN INVESTMENTS", "BURLINGTON RESOURCES",
    "SHELL OIL COMPANY", "AMOCO PRODUCTION CO", "MOBIL OIL CORP", "PHILLIPS PETROLEUM",
]
LEASES = [
    "SMITH", "JOHNSON RANCH", "STATE", "UNIVERSITY LANDS", "MCCLINTIC", "HAYES", "BLACKSTONE",
    "BRADFORD", "COTTONWOOD", "DRY CREEK", "EAGLE", "HARRIS UNIT", "MESA VERDE", "WILLOW",
]
LOG_TYPES = [
    "DUAL INDUCTION LATEROLOG", "COMPENSATED NEUTRON LITHO-DENSITY", "BOREHOLE COMPENSATED SONIC",
    "GAMMA RAY NEUTRON", "SPECTRAL GAMMA RAY", "MICROLOG", "ARRAY INDUCTION", "CEMENT BOND LOG",
]
LOGGING_COMPANIES = ["SCHLUMBERGER", "HALLIBURTON", "BAKER ATLAS", "WEATHERFORD", "DRESSER ATLAS"]

# Transcription order: the reading order of a printed header, top to bottom.
FIELDS = (
    ("COMPANY", "operator"),
    ("WELL", "well_name"),
    ("API NO", "api_number"),
    ("FIELD", "field"),
    ("COUNTY", "county"),
    ("STATE", "state"),
    ("ELEV KB", "elevation_kb"),
    ("ELEV GL", "elevation_gl"),
    ("LOG", "log_type"),
    ("DATE", "log_date"),
)


@dataclass(frozen=True)
class HeaderRecord:
    operator: str
    well_name: str
    api_number: str
    field: str
    county: str
    state: str
    elevation_kb: str
    elevation_gl: str
    log_type: str
    log_date: str
    logging_company: str

    def transcription(self) -> str:
        """The exact text a reader should produce: one `LABEL: value` line per field."""
        return "\n".join(f"{label}: {getattr(self, attr)}" for label, attr in FIELDS)


def sample_record(seed: int, split: str, index: int) -> HeaderRecord:
    """Draw the header fields of one sample; depends only on its arguments."""
    rng = random.Random(f"well-log-headers:{seed}:{split}:{index}")
    state = rng.choice(sorted(STATES))
    state_code, counties, fields = STATES[state]
    ground = rng.randint(250, 5200)
    return HeaderRecord(
        operator=rng.choice(OPERATORS),
        well_name=f"{rng.choice(LEASES)} {rng.randint(1, 48)}-{rng.randint(1, 36)}{rng.choice(['', '', 'H', 'D'])}",
        api_number=f"{state_code}-{rng.randint(1, 509):03d}-{rng.randint(0, 99999):05d}",
        field=rng.choice(fields),
        county=rng.choice(counties),
        state=state,
        elevation_kb=f"{ground + rng.randint(12, 32)} FT",
        elevation_gl=f"{ground} FT",
        log_type=rng.choice(LOG_TYPES),
        log_date=f"{rng.randint(1, 12):02d}/{rng.randint(1, 28):02d}/{rng.randint(1958, 2024)}",
        logging_company=rng.choice(LOGGING_COMPANIES),
    )


@lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.FreeTypeFont:
    # Pillow's bundled font keeps rendering identical on every machine, no system fonts needed.
    return ImageFont.load_default(size=size)


def render_header(record: HeaderRecord, seed: int, split: str, index: int) -> Image.Image:
    """Draw the record as a scanned log header: boxed title, label/value rows, scan noise."""
    rng = random.Random(f"well-log-render:{seed}:{split}:{index}")
    width, height = IMAGE_SIZE
    paper = rng.randint(225, 250)
    image = Image.new("RGB", IMAGE_SIZE, (paper, paper, paper - rng.randint(0, 12)))
    draw = ImageDraw.Draw(image)
    ink = (rng.randint(0, 40),) * 3
    draw.rectangle([6, 6, width - 7, height - 7], outline=ink, width=2)
    draw.rectangle([6, 6, width - 7, 44], outline=ink, width=2)
    draw.text((16, 14), record.logging_company, font=_font(22), fill=ink)
    draw.text((width - 16, 16), record.log_type, font=_font(15), fill=ink, anchor="ra")
    row_height = (height - 60) // len(FIELDS)
    for row, (label, attr) in enumerate(FIELDS):
        y = 52 + row * row_height
        draw.text((16, y), label, font=_font(15), fill=ink)
        draw.text((150, y), getattr(record, attr), font=_font(17), fill=ink)
        draw.line([(148, y + row_height - 3), (width - 16, y + row_height - 3)], fill=ink, width=1)
    angle = rng.uniform(-1.2, 1.2)
    image = image.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=(paper,) * 3)
    if rng.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.2, 0.7)))
    return image


def split_size(split: str) -> int:
    if split not in SPLIT_SIZES:
        raise KeyError(f"unknown split {split!r}; the synthetic set has {', '.join(SPLIT_SIZES)}")
    return SPLIT_SIZES[split]


def corpus(seed: int = 0, samples: int = 2000) -> list[str]:
    """Transcriptions to train the stand-in tokenizer on (text only, nothing rendered)."""
    return [sample_record(seed, "train", i).transcription() for i in range(samples)]

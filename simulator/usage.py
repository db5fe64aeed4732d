"""The simulator's token accounting for GPT image models.

This is the simulator's model of usage, built from the public guide, not OpenAI's exact billing:

* output tokens per image come from the guide's table (quality × size); a size outside the table
  scales the quality's 1024x1024 count by pixel area, rounded up; an unknown quality counts as
  "high" and "auto" as "medium";
* each streamed partial image adds 100 output tokens (the guide's "+100 per partial image");
* input text tokens are ceil(len(prompt) / 4), the usual four-characters-per-token rule of thumb
  (the real tokenizer is not available here);
* input image tokens follow a tile model: fit the image within 2048x2048, then shrink it so its
  shortest side is 512 (never enlarge), count 512-pixel tiles, and charge 65 + 129 per tile;
  `input_fidelity: "high"` adds 4160 tokens for the first input image, and so does every edit by
  GPT Image 2 and its successors, which read input at high fidelity unasked. Masks are not
  counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

__all__ = [
    "DEFAULT_INPUT_SIZE",
    "HIGH_FIDELITY_TOKENS",
    "OUTPUT_TOKENS",
    "PARTIAL_IMAGE_TOKENS",
    "Usage",
    "image_input_tokens",
    "output_tokens_per_image",
    "quality_tier",
    "text_tokens",
]

# Output image tokens per image, by quality tier and (width, height), from the guide's table.
OUTPUT_TOKENS: dict[str, dict[tuple[int, int], int]] = {
    "low": {(1024, 1024): 272, (1024, 1536): 408, (1536, 1024): 400},
    "medium": {(1024, 1024): 1056, (1024, 1536): 1584, (1536, 1024): 1568},
    "high": {(1024, 1024): 4160, (1024, 1536): 6240, (1536, 1024): 6208},
}
PARTIAL_IMAGE_TOKENS = 100
# Qualities above high (gpt-image-2 and later): no public counts; the simulator's own model is
# 1.5 and 2 times `high`, rounded up.
_ABOVE_HIGH = {"xhigh": (3, 2), "max": (2, 1)}
# `complexity` (planning before rendering): the simulator bills it as text output per image.
COMPLEXITY_TEXT_TOKENS = {"low": 300, "medium": 900, "high": 2500}
# SVG output: the author reads the prompt and a reference image and writes the SVG, reasoning
# included (its output counts the reasoning, as the Responses API's does).
SVG_READ_TOKENS = 765
SVG_OUTPUT_TOKENS = 2400
SVG_REASONING_TOKENS = 600
SVG_DEFAULT_AUTHOR = "gpt-5-mini"
HIGH_FIDELITY_TOKENS = 4160
# Input images whose size cannot be read (http URLs, file ids, unknown formats) count as this.
DEFAULT_INPUT_SIZE = (1024, 1024)

_SQUARE_PIXELS = 1024 * 1024
# The tile model for input images (after the public vision guide).
_FIT_WITHIN = 2048
_TILE_SIDE = 512
_BASE_TOKENS = 65
_TOKENS_PER_TILE = 129


def image_input_tokens(width: int, height: int) -> int:
    """Input tokens of one image: fit it within 2048x2048, then shrink it so its shortest side
    is 512 (never enlarge), and charge 65 plus 129 per 512-pixel tile it covers."""
    w, h = Fraction(width), Fraction(height)
    longest = max(w, h)
    if longest > _FIT_WITHIN:
        w, h = w * _FIT_WITHIN / longest, h * _FIT_WITHIN / longest
    shortest = min(w, h)
    if shortest > _TILE_SIDE:
        w, h = w * _TILE_SIDE / shortest, h * _TILE_SIDE / shortest
    tiles = math.ceil(w / _TILE_SIDE) * math.ceil(h / _TILE_SIDE)
    return _BASE_TOKENS + _TOKENS_PER_TILE * tiles


def quality_tier(quality: str, *, above_high: bool = False) -> str:
    """The table row for `quality`: itself if known (xhigh and max, which scale `high`, only for
    models that have them: `above_high`), "medium" for "auto", else "high"."""
    if quality in OUTPUT_TOKENS or (above_high and quality in _ABOVE_HIGH):
        return quality
    if quality == "auto":
        return "medium"
    return "high"


def output_tokens_per_image(tier: str, width: int, height: int) -> int:
    """Output image tokens for one final image of `width` × `height` at quality tier `tier`."""
    if tier in _ABOVE_HIGH:
        times, over = _ABOVE_HIGH[tier]
        return -(-output_tokens_per_image("high", width, height) * times // over)
    table = OUTPUT_TOKENS[tier]
    exact = table.get((width, height))
    if exact is not None:
        return exact
    # ceil(square × area / 1024²) in integers, so no float rounding can creep in.
    return -(-table[(1024, 1024)] * width * height // _SQUARE_PIXELS)


def text_tokens(prompt: str) -> int:
    """ceil(len(prompt) / 4): the simulator's stand-in for a tokenizer."""
    return -(-len(prompt) // 4)


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage of a request (or of one image of it), in the Images API's `usage` shape."""

    text_tokens: int
    image_tokens: int
    output_tokens: int
    text_output_tokens: int = 0  # of output_tokens: the text part (complexity's planning)

    @property
    def input_tokens(self) -> int:
        return self.text_tokens + self.image_tokens

    def to_json(self) -> dict[str, Any]:
        """The `usage` object as the API returns it."""
        return {
            "total_tokens": self.input_tokens + self.output_tokens,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "input_tokens_details": {
                "text_tokens": self.text_tokens,
                "image_tokens": self.image_tokens,
            },
            "output_tokens_details": {
                "image_tokens": self.output_tokens - self.text_output_tokens,
                "text_tokens": self.text_output_tokens,
            },
        }

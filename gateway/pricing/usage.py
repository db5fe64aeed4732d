"""A response's token counts, read from the API's `usage` (and `svg_usage`) objects."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

# The most tokens of one kind a usage is charged for: a thousand times any real image request,
# and small enough that tokens × the dearest rate stays an exact, storable 64-bit integer.
MAX_TOKENS = 10**12
PARTIAL_IMAGE_TOKENS = 100  # each partial image costs 100 image output tokens (image guide)
MAX_PARTIAL_IMAGES = 3  # per image (the API's bound on `partial_images`)


@dataclass(frozen=True)
class Usage:
    """Token counts of a request, split by how each kind is billed. All are ints >= 0.

    `text_input` and `image_input` exclude the cached tokens counted in `cached_text_input` and
    `cached_image_input`.
    """

    text_input: int
    cached_text_input: int
    image_input: int
    cached_image_input: int
    image_output: int
    text_output: int

    def __post_init__(self) -> None:
        for name in _COUNTS:  # made for every request: the names once, not fields() each time
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"usage {name} must be a whole number >= 0, not {value!r}")

    def bounded(self) -> tuple[Usage, bool]:
        """This usage with every count at most MAX_TOKENS, and whether any was past it."""
        counts = {item.name: getattr(self, item.name) for item in fields(self)}
        if all(count <= MAX_TOKENS for count in counts.values()):
            return self, False
        return Usage(**{name: min(count, MAX_TOKENS) for name, count in counts.items()}), True

    def plus_output(self, image_tokens: int) -> Usage:
        """This usage with `image_tokens` more image output."""
        return replace(self, image_output=self.image_output + image_tokens)

    @classmethod
    def from_api(cls, usage: Mapping[str, Any]) -> Usage:
        """Read the API's `usage` object (a JSON body's, or a stream's `*.completed` event's).

        Input: `input_tokens_details.text_tokens` / `image_tokens` split `input_tokens`; without
        details every input token counts as text; a detail that is missing is the rest of
        `input_tokens`, and input tokens the details leave out count as text. Cached tokens come
        from `cached_tokens_details.text_tokens` / `image_tokens`, or else from `cached_tokens`,
        taken from text first (the smaller discount at every shipped price) and then image; they
        are billed at the cached rate and subtracted from their kind, and never exceed it.

        Output: `output_tokens_details.image_tokens` / `text_tokens` split `output_tokens`;
        without details ALL output tokens are image output (GPT image models bill output at
        the image rate); output tokens the details leave out count as image output.

        Absent keys and JSON nulls are "not given". Raises ValueError for anything else that is
        not a whole number >= 0, and for details that are not objects.
        """
        if not isinstance(usage, Mapping):
            raise ValueError(f"usage must be an object, not {type(usage).__name__}")
        input_total = _count(usage, "input_tokens", "usage")
        output_total = _count(usage, "output_tokens", "usage")
        in_details = _details(usage, "input_tokens_details", "usage")
        out_details = _details(usage, "output_tokens_details", "usage")

        where = "usage.input_tokens_details"
        text, image = _split(
            input_total,
            _count(in_details, "text_tokens", where),
            _count(in_details, "image_tokens", where),
        )
        cached_details = _details(in_details, "cached_tokens_details", where)
        cached_where = f"{where}.cached_tokens_details"
        cached_text = _count(cached_details, "text_tokens", cached_where)
        cached_image = _count(cached_details, "image_tokens", cached_where)
        if cached_text is None and cached_image is None:
            cached = _count(in_details, "cached_tokens", where) or 0
            cached_text = min(cached, text)
            cached_image = min(cached - cached_text, image)
        cached_text = min(cached_text or 0, text)
        cached_image = min(cached_image or 0, image)

        where = "usage.output_tokens_details"
        out_image, out_text = _split(
            output_total,
            _count(out_details, "image_tokens", where),
            _count(out_details, "text_tokens", where),
        )
        return cls(
            text_input=text - cached_text,
            cached_text_input=cached_text,
            image_input=image - cached_image,
            cached_image_input=cached_image,
            image_output=out_image,
            text_output=out_text,
        )


_COUNTS = tuple(item.name for item in fields(Usage))


def stream_usage(usages: list[Usage]) -> Usage:
    """What a stream's completed events' usage objects add up to (n > 1 streams send one per
    image).

    The API reference describes each completed event's usage as that of "the output image"
    (`output_tokens`: "the number of image tokens in the output image"), with the request's
    whole input in each. So the input is counted once (the largest an event reports) and each
    event's output is summed. Some upstreams instead send a running or whole total, the last
    event's output covering all images: an image's output tokens are fixed by its size and
    quality, so images of one request report the same output but for their partial images (the
    final image may come before all of them). A last event reporting at least 1.5 times the
    output of every event before it, and more than partial images could explain, is such a
    total: then it is the request's usage. Both shapes are charged what was produced, never
    twice.
    """
    if not usages:
        raise ValueError("no usage to add up")
    last, earlier = usages[-1], usages[:-1]
    if not earlier:
        return last
    most = max(u.image_output for u in earlier)
    if 2 * last.image_output >= 3 * most and (
        last.image_output - most > PARTIAL_IMAGE_TOKENS * MAX_PARTIAL_IMAGES
    ):
        return last
    return Usage(
        text_input=max(u.text_input for u in usages),
        cached_text_input=max(u.cached_text_input for u in usages),
        image_input=max(u.image_input for u in usages),
        cached_image_input=max(u.cached_image_input for u in usages),
        image_output=sum(u.image_output for u in usages),
        text_output=sum(u.text_output for u in usages),
    )


@dataclass(frozen=True)
class SvgUsage:
    """What authoring an SVG cost (`svg_usage`): its text model and billable tokens.

    `output_tokens` counts reasoning too: the larger of the reported output and total - input.
    """

    model: str
    input_tokens: int
    output_tokens: int

    @classmethod
    def from_api(cls, usage: Mapping[str, Any]) -> SvgUsage:
        """Read the API's `svg_usage` object; raises ValueError when it cannot be billed."""
        if not isinstance(usage, Mapping):
            raise ValueError(f"svg_usage must be an object, not {type(usage).__name__}")
        model = usage.get("model")
        if not isinstance(model, str) or not model:
            raise ValueError("svg_usage.model must name a model")
        given = _count(usage, "input_tokens", "svg_usage")
        output = _count(usage, "output_tokens", "svg_usage")
        total = _count(usage, "total_tokens", "svg_usage")
        reasoning = _count(usage, "reasoning_tokens", "svg_usage")
        if given is None or (output is None and total is None):
            raise ValueError("svg_usage must give input_tokens and output or total tokens")
        billable = max(output or 0, (total or 0) - given)
        if output is not None and total is not None and total < given + output:
            billable += reasoning or 0  # reasoning was reported beside, not inside, the output
        return cls(model, given, billable)

    def bounded(self) -> tuple[SvgUsage, bool]:
        """This usage with both counts at most MAX_TOKENS, and whether either was past it."""
        if max(self.input_tokens, self.output_tokens) <= MAX_TOKENS:
            return self, False
        capped = SvgUsage(
            self.model, min(self.input_tokens, MAX_TOKENS), min(self.output_tokens, MAX_TOKENS)
        )
        return capped, True

    def as_usage(self) -> Usage:
        return Usage(self.input_tokens, 0, 0, 0, 0, self.output_tokens)


def _count(mapping: Mapping[str, Any], key: str, where: str) -> int | None:
    """A token count: a whole number >= 0, also when written as a float (`1632.0`)."""
    value = mapping.get(key)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{where}.{key} must be a whole number >= 0, not {value!r}")
    return value


def _details(mapping: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = mapping.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}.{key} must be an object, not {type(value).__name__}")
    return value


def _split(total: int | None, first: int | None, second: int | None) -> tuple[int, int]:
    """Split `total` into (first, second) kinds; what the details leave out goes to `first`."""
    if first is None and second is None:
        return total or 0, 0
    if second is None:
        assert first is not None
        return first, max((total or 0) - first, 0)
    if first is None:
        return max((total or 0) - second, 0), second
    return first + max((total or 0) - first - second, 0), second


NO_USAGE = Usage(0, 0, 0, 0, 0, 0)  # what a request that reported nothing used

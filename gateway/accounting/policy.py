"""What a key or a team may ask for: allowed models and qualities, and the most images, pixels,
GIF frames and partial images per request. Kept as a JSON object on the key and on the team
(NULL: nothing restricted); a request must fit both.

What holds: a request outside its key's or its team's policy is refused 403 `permission_denied`
(code `model_not_allowed` or `parameter_not_allowed`, `param` naming the field) before anything
is held or sent upstream. A size left to the model (`auto`, or unset) counts as 1536×1024, the
largest standard size.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from gateway.edge.params import ImageParams
from gateway.errors import GatewayError
from gateway.outcome import Outcome
from gateway.pricing.table import parse_size
from gateway.proxy.flow import Flow

FIELDS = ("allowed_models", "allowed_qualities", "max_n", "max_pixels", "max_frame_count",
          "max_partial_images")  # fmt: skip
AUTO_PIXELS = 1536 * 1024


def read_policy(text: str | None) -> dict[str, Any]:
    """The policy's fields (an empty dict: nothing restricted)."""
    if not text:
        return {}
    found = json.loads(text)
    return found if isinstance(found, dict) else {}


def merged(current: str | None, given: Mapping[str, Any]) -> str | None:
    """`current` with the `given` fields set (None clears one), as stored."""
    policy = read_policy(current)
    for name, value in given.items():
        if value is None:
            policy.pop(name, None)
        else:
            policy[name] = sorted(value) if isinstance(value, list | set) else value
    return json.dumps(policy, sort_keys=True) if policy else None


def refused(code: str, message: str, param: str) -> GatewayError:
    return GatewayError(403, message, type="permission_denied", code=code, param=param,
                        outcome=Outcome.REFUSED_POLICY)  # fmt: skip


def check(policy: Mapping[str, Any], whose: str, models: list[tuple[str, str]],
          params: ImageParams, images: int) -> None:  # fmt: skip
    """Raise 403 for the first field outside `policy`; `models` are (model, param) pairs."""
    allowed = policy.get("allowed_models")
    for model, param in models:
        if allowed is not None and model not in allowed:
            raise refused("model_not_allowed",
                          f"The model {model!r} is not allowed for this {whose}; allowed:"
                          f" {', '.join(allowed) or 'none'}.", param)  # fmt: skip
    qualities = policy.get("allowed_qualities")
    quality = params.quality or "auto"
    if qualities is not None and quality not in qualities:
        raise refused("parameter_not_allowed",
                      f"The quality {quality!r} is not allowed for this {whose}; allowed:"
                      f" {', '.join(qualities) or 'none'}.", "quality")  # fmt: skip
    size = parse_size(params.size) if params.size else None
    pixels = size[0] * size[1] if size else AUTO_PIXELS
    for name, value, param in (
        ("max_n", images, "n"),
        ("max_pixels", pixels, "size"),
        ("max_frame_count", params.frame_count or 0, "frame_count"),
        ("max_partial_images", params.partial_images, "partial_images"),
    ):
        most = policy.get(name)
        if most is not None and value > most:
            raise refused("parameter_not_allowed",
                          f"'{param}' asks for {value}, more than this {whose} may"
                          f" ({name} {most}).", param)  # fmt: skip


async def check_policy(flow: Flow) -> None:
    """The request fits its key's and its team's policy (stage: before any estimate or hold)."""
    caller, params = flow.caller, flow.parsed
    if caller is None or params is None or not (caller.key.policy or caller.team.policy):
        return
    if flow.ask is not None:
        models = [(flow.ask.model, "model"), (flow.ask.image_model, "tools")]
    else:
        models = [(flow.model, "model")] if flow.model else []
    for whose, text in (("key", caller.key.policy), ("team", caller.team.policy)):
        check(read_policy(text), whose, models, params, flow.n)

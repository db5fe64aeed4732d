"""Attribution: the tags a request carries (`X-Gateway-Tags: project=atlas,env=prod`) and the end
user its body names (`user`), kept on its ledger row for reports to filter and group by.

What holds: at most MAX_TAGS pairs, each key and value at most MAX_CHARS characters, keys of
letters, digits and `_.-`, values without `,` or `=`; anything else is refused 400
`invalid_tags`, naming the header, before anything is held or sent. The header never goes
upstream.
"""

from __future__ import annotations

import json
import re

from gateway.errors import invalid_request
from gateway.proxy.flow import Flow

HEADER = "X-Gateway-Tags"
MAX_TAGS = 10
MAX_CHARS = 64
MAX_USER_CHARS = 256
_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def read_tags(header: str | None) -> dict[str, str]:
    """The header's pairs, keys sorted; {} when absent."""
    if header is None or not header.strip():
        return {}
    pairs = [part.strip() for part in header.split(",") if part.strip()]
    if len(pairs) > MAX_TAGS:
        raise _invalid(f"at most {MAX_TAGS} tags, not {len(pairs)}")
    tags: dict[str, str] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        key, value = key.strip(), value.strip()
        if not equals or not _KEY.match(key) or not value or len(value) > MAX_CHARS:
            raise _invalid(
                f"{pair[:80]!r} is not KEY=VALUE (a key of letters, digits and _.-,"
                f" each at most {MAX_CHARS} characters)"
            )
        if "=" in value or key in tags:
            raise _invalid(f"{pair[:80]!r} repeats a key or holds a second '='")
        tags[key] = value
    return dict(sorted(tags.items()))


def _invalid(why: str) -> Exception:
    return invalid_request(f"Invalid {HEADER} header: {why}.", code="invalid_tags", param=HEADER)


async def attribute(flow: Flow) -> None:
    """`flow.tags` and `flow.end_user` are set from the header and the body's `user`."""
    flow.tags = read_tags(flow.request.headers.get(HEADER))
    user = flow.params.get("user")
    flow.end_user = user[:MAX_USER_CHARS] if isinstance(user, str) and user else None


def tags_json(tags: dict[str, str]) -> str | None:
    return json.dumps(tags, sort_keys=True, ensure_ascii=False) if tags else None

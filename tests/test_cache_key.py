"""The cache key: what must and must not change it (properties, with hypothesis)."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.cache.key import KeyRequest, cache_key
from gateway.edge.body import SpooledBody, read_stream

IGNORED = ("user", "safety_identifier")
GPT = KeyRequest(
    scope="team:1", endpoint="generations", query="", model="gpt-image-1", stream=False
)
EDIT = KeyRequest(scope="team:1", endpoint="edits", query="", model="gpt-image-1", stream=False)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def body_of(
    content_type: str, data: bytes, spool_dir: Path, chunk: int = 7919
) -> SpooledBody:
    body = await read_stream(
        _chunks(data, chunk),
        content_type=content_type,
        declared_size=len(data),
        limit=1 << 30,
        spool_threshold=64 * 1024,
        spool_dir=spool_dir,
    )
    await body.aclose()  # the summary stays; only a spool file would go
    return body


async def json_key(document: str, request: KeyRequest = GPT, tmp: Path = Path("/tmp")) -> str:
    body = await body_of("application/json", document.encode(), tmp)
    return cache_key(request, body, IGNORED)


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str) -> tuple[str, bytes]:
    """(name, filename or None for a text field, content) parts as a multipart body."""
    out = bytearray()
    for name, filename, content in parts:
        out += f"--{boundary}\r\n".encode()
        if filename is None:
            out += f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        else:
            out += (
                f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                "Content-Type: image/png\r\n\r\n"
            ).encode()
        out += content + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", bytes(out)


async def form_key(
    parts: list[tuple[str, str | None, bytes]], boundary: str, tmp: Path, chunk: int = 7919
) -> str:
    content_type, data = multipart(parts, boundary)
    return cache_key(EDIT, await body_of(content_type, data, tmp, chunk), IGNORED)


texts = st.text(min_size=1, max_size=40)
values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
extra_fields = st.dictionaries(
    st.text(min_size=1, max_size=12).filter(lambda k: k not in ("model", "stream", *IGNORED)),
    values,
    max_size=5,
)
boundaries = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'()+_,-.",
    min_size=8,
    max_size=60,
)
file_names = st.text(alphabet="abcdefghij-_.", min_size=1, max_size=20)
images = st.lists(st.binary(min_size=1, max_size=3000), min_size=1, max_size=4)


@SETTINGS
@given(fields=extra_fields, seed=st.integers(0, 2**32), indent=st.sampled_from([None, 0, 2]))
async def test_json_key_ignores_order_whitespace_and_number_spelling(
    fields: dict[str, Any], seed: int, indent: int | None
) -> None:
    document = {"prompt": "an otter", "model": "gpt-image-1", **fields}
    items = list(document.items())
    random.Random(seed).shuffle(items)
    reordered = json.dumps(dict(items), indent=indent)
    assert await json_key(json.dumps(document)) == await json_key(reordered)


async def test_json_number_spelling_and_defaults() -> None:
    plain = await json_key('{"prompt": "otter", "model": "gpt-image-1", "output_compression": 50}')
    for spelling in ("50.0", "5e1", "50.000", "0.5e2"):
        other = f'{{"prompt":"otter","model":"gpt-image-1","output_compression":{spelling}}}'
        assert await json_key(other) == plain, spelling
    base = await json_key('{"prompt": "otter", "model": "gpt-image-1"}')
    for default in ('"n": 1', '"n": 1.0', '"quality": "auto"', '"stream": false', '"user": "u1"'):
        document = f'{{"prompt": "otter", "model": "gpt-image-1", {default}}}'
        assert await json_key(document) == base, default
    # `true` is not `1`, and a non-default value is part of the key.
    for other in ('"n": 2', '"n": true', '"quality": "low"', '"newfield": 1'):
        document = f'{{"prompt": "otter", "model": "gpt-image-1", {other}}}'
        assert await json_key(document) != base, other


async def test_omitted_model_is_the_endpoints_default() -> None:
    dalle = KeyRequest(scope="team:1", endpoint="generations", query="", model="dall-e-2",
                       stream=False)  # fmt: skip
    omitted = await json_key('{"prompt": "otter"}', dalle)
    explicit = await json_key('{"prompt": "otter", "model": "dall-e-2"}', dalle)
    assert omitted == explicit


@SETTINGS
@given(fields=extra_fields, data=st.data())
async def test_any_changed_field_changes_the_key(fields: dict[str, Any], data: Any) -> None:
    document = {"prompt": "an otter", **fields}
    name = data.draw(st.sampled_from(sorted(document)))
    changed = dict(document)
    changed[name] = data.draw(values.filter(lambda v: v != document[name] and _not_alias(v)))
    if _not_alias(document[name]):
        assert await json_key(json.dumps(document)) != await json_key(json.dumps(changed))


def _not_alias(value: Any) -> bool:
    # Defaults are meant to equal omission (`n: 1`), and bools/ints compare equal in Python.
    return not isinstance(value, int | float) or isinstance(value, bool)


async def test_scope_endpoint_stream_and_query_are_part_of_the_key() -> None:
    document = '{"prompt": "otter", "model": "gpt-image-1"}'
    base = await json_key(document)
    for request in (
        KeyRequest("team:2", "generations", "", "gpt-image-1", False),
        KeyRequest("global", "generations", "", "gpt-image-1", False),
        KeyRequest("team:1", "edits", "", "gpt-image-1", False),
        KeyRequest("team:1", "generations", "", "gpt-image-1", True),
        KeyRequest("team:1", "generations", "x=1", "gpt-image-1", False),
    ):
        assert await json_key(document, request) != base, request


@SETTINGS
@given(
    pictures=images,
    boundary_a=boundaries,
    boundary_b=boundaries,
    names_a=st.lists(file_names, min_size=4, max_size=4),
    names_b=st.lists(file_names, min_size=4, max_size=4),
    seed=st.integers(0, 2**32),
    chunk=st.integers(1, 5000),
    array=st.booleans(),
)
async def test_multipart_key_ignores_boundary_file_names_and_field_order(
    tmp_path_factory: Any,
    pictures: list[bytes],
    boundary_a: str,
    boundary_b: str,
    names_a: list[str],
    names_b: list[str],
    seed: int,
    chunk: int,
    array: bool,
) -> None:
    tmp = tmp_path_factory.mktemp("spool")
    fields: list[tuple[str, str | None, bytes]] = [
        ("prompt", None, b"make it blue"),
        ("model", None, b"gpt-image-1"),
        ("size", None, b"1024x1024"),
        ("user", None, b"someone"),
    ]
    image_name = "image[]" if len(pictures) > 1 or array else "image"
    files: list[tuple[str, str | None, bytes]] = [
        (image_name, names_a[i], p) for i, p in enumerate(pictures)
    ]
    first = await form_key(fields + files, boundary_a, tmp)
    # Another boundary, other file names, `image` spelled the other way, the distinct fields
    # shuffled among the images (whose order is kept), the user field gone, other chunking.
    other_name = "image" if image_name == "image[]" else "image[]"
    other_files: list[tuple[str, str | None, bytes]] = [
        (other_name, names_b[i], p) for i, p in enumerate(pictures)
    ]
    mixed: list[tuple[str, str | None, bytes]] = list(other_files)
    rng = random.Random(seed)
    for field in fields[:3]:
        mixed.insert(rng.randrange(len(mixed) + 1), field)
    assert await form_key(mixed, boundary_b, tmp, chunk) == first


@SETTINGS
@given(pictures=images, data=st.data())
async def test_multipart_key_sees_every_image_byte_and_their_order(
    tmp_path_factory: Any, pictures: list[bytes], data: Any
) -> None:
    tmp = tmp_path_factory.mktemp("spool")
    fields: list[tuple[str, str | None, bytes]] = [("prompt", None, b"blue")]
    files: list[tuple[str, str | None, bytes]] = [
        ("image[]", f"{i}.png", p) for i, p in enumerate(pictures)
    ]
    base = await form_key(fields + files, "b" * 20, tmp)

    which = data.draw(st.integers(0, len(pictures) - 1))
    at = data.draw(st.integers(0, len(pictures[which]) - 1))
    flipped = bytearray(pictures[which])
    flipped[at] ^= data.draw(st.integers(1, 255))
    changed = list(files)
    changed[which] = ("image[]", f"{which}.png", bytes(flipped))
    assert await form_key(fields + changed, "b" * 20, tmp) != base

    if len(set(pictures)) > 1:
        swapped = list(reversed(files))
        if [p for _, _, p in swapped] != pictures:
            assert await form_key(fields + swapped, "b" * 20, tmp) != base

    assert await form_key([("prompt", None, b"green"), *files], "b" * 20, tmp) != base


async def test_multipart_text_past_the_field_limit_is_still_whole_in_the_key(
    tmp_path: Path,
) -> None:
    long_a = b"a" * (2 * 1024 * 1024)
    long_b = long_a[:-1] + b"b"
    key_a = await form_key([("prompt", None, long_a)], "x" * 16, tmp_path)
    key_b = await form_key([("prompt", None, long_b)], "x" * 16, tmp_path)
    assert key_a != key_b

"""The price table: `load_prices` reads and validates a price file into a `PriceTable` of
`ModelPrice`s, so that the rest of the gateway can trust every figure."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import (
    Decimal,
    InvalidOperation,
)
from pathlib import Path
from types import MappingProxyType
from typing import Any

TOKEN_RATES = (
    "text_input",
    "cached_text_input",
    "image_input",
    "cached_image_input",
    "image_output",
    "text_output",
)
_REQUIRED_TOKEN_RATES = ("text_input", "image_input", "image_output")
_MODEL_KEYS = frozenset(
    {
        "source",
        *TOKEN_RATES,
        "per_image",
        "output_tokens",
        "complexity_tokens",
        "max_output_tokens",
        "always_high_fidelity",
        "batch",
    }
)
# A text model (one that authors SVG for an image model) has these rates and an output cap.
_TEXT_MODEL_RATES = ("text_input", "text_output")
_TOP_KEYS = frozenset({"version", "models", "aliases", "default_output_tokens"})


_SIZE_RE = re.compile(r"^([1-9][0-9]*)x([1-9][0-9]*)$")
_SNAPSHOT_RE = re.compile(r"^(.+)-[0-9]{4}-[0-9]{2}-[0-9]{2}$")


class PriceError(Exception):
    """A price file that cannot be used. The message names the file and the problem."""


@dataclass(frozen=True)
class ModelPrice:
    """One model's prices, as validated by `load_prices`.

    Token rates are USD per 1M tokens (None: the model has no such rate). A per-image model has a
    non-empty `per_image` ("WxH" or "quality:WxH" -> USD per image) and no token rates; a
    token-billed model has `text_input`, `image_input`, `image_output` and a non-empty
    `output_tokens` (quality -> "WxH" -> output tokens per image).
    """

    name: str
    source: str
    text_input: Decimal | None
    cached_text_input: Decimal | None
    image_input: Decimal | None
    cached_image_input: Decimal | None
    image_output: Decimal | None
    text_output: Decimal | None
    per_image: Mapping[str, Decimal]
    output_tokens: Mapping[str, Mapping[str, int]]
    # complexity -> text output tokens per image, an upper bound of the planning `complexity`
    # adds (empty: the model has no such parameter, or it adds nothing).
    complexity_tokens: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    # Text models only: the most output tokens one answer can have (bounds an SVG's cost).
    max_output_tokens: int | None = None
    # The model reads every input image at high fidelity, asked or not (GPT Image 2: the API
    # says to omit `input_fidelity`): edits are estimated with high-fidelity input tokens.
    always_high_fidelity: bool = False
    # What a line of a Batch API batch costs, as a share of the online price (OpenAI: 0.5).
    batch: Decimal = Decimal(1)

    @property
    def per_image_billing(self) -> bool:
        """True when the model is charged per image rather than per token."""
        return bool(self.per_image)

    @property
    def text_only(self) -> bool:
        """A text model: it prices SVG authoring (`svg_usage`), never an image request."""
        return not self.per_image and self.image_output is None


@dataclass(frozen=True)
class PriceTable:
    """A loaded price file: its `version` (effective date), `path`, models and aliases.

    Every alias names a key of `models`, and no alias is also a model name.
    """

    version: str
    path: str
    models: Mapping[str, ModelPrice]
    aliases: Mapping[str, str]

    def lookup(self, model: str) -> ModelPrice | None:
        """The price of `model`: by exact name, then alias, then as a dated snapshot.

        A snapshot `NAME-YYYY-MM-DD` resolves to NAME (itself looked up by name or alias). None
        when the model is not priced. Names are case-sensitive, as the API's are.
        """
        found = self._direct(model)
        if found is None:
            match = _SNAPSHOT_RE.match(model)
            if match is not None:
                found = self._direct(match.group(1))
        return found

    def dearest_text_model(self) -> ModelPrice | None:
        """The text model with the dearest text output (then input): the upper bound for an SVG
        whose author the request does not name."""
        texts = [price for price in self.models.values() if price.text_only]
        return max(texts, key=lambda p: (p.text_output, p.text_input), default=None)

    def dearest_image_model(self) -> ModelPrice | None:
        """The token-billed image model with the dearest image output (then input) rate."""
        images = [p for p in self.models.values() if p.image_output is not None]
        return max(images, key=lambda p: (p.image_output, p.image_input), default=None)

    def _direct(self, model: str) -> ModelPrice | None:
        price = self.models.get(model)
        if price is None and model in self.aliases:
            price = self.models.get(self.aliases[model])
        return price


def load_prices(path: Path) -> PriceTable:
    """Read and validate a price file; raise PriceError naming the file and the problem.

    Checked: TOML syntax; a non-empty `version` (a string, or a TOML date); known keys only at
    every level; money as non-negative decimal strings or integers (floats are refused, since
    they cannot hold cents exactly); a `source` per model; each model either per-image or
    token-billed with text_input, image_input and image_output; output-token tables of quality
    -> "WxH" -> whole tokens >= 0, with [default_output_tokens] standing in for a token-billed
    model without its own; per-image keys "WxH" or "quality:WxH"; aliases naming a model.
    """
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise PriceError(f"{path}: cannot read the price file: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PriceError(f"{path}: not valid TOML: {exc}") from exc
    return _Loader(str(path)).table(data)


def parse_size(size: str) -> tuple[int, int] | None:
    match = _SIZE_RE.match(size)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


def per_image_key(key: str) -> tuple[str | None, str]:
    quality, _, size = key.rpartition(":")
    return quality or None, size


class _Loader:
    """Validation of a parsed price file; every error becomes a PriceError naming the file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, where: str, problem: str) -> PriceError:
        return PriceError(f"{self.path}: {where}: {problem}")

    def table(self, data: Mapping[str, Any]) -> PriceTable:
        self.known_keys(data, _TOP_KEYS, "top level")
        version = data.get("version")
        if isinstance(version, date):
            version = version.isoformat()
        if version is None:
            raise self.fail("version", 'missing: add e.g. version = "2026-11-01" at the top')
        if not isinstance(version, str) or not version.strip():
            raise self.fail("version", f"must be a non-empty string, not {version!r}")
        default_tokens = None
        if "default_output_tokens" in data:
            default_tokens = self.output_tokens(
                data["default_output_tokens"], "default_output_tokens"
            )
        models_data = self.mapping(data.get("models", {}), "models")
        if not models_data:
            raise self.fail("models", "no models are priced")
        models: dict[str, ModelPrice] = {}
        for name, model_data in models_data.items():
            models[name] = self.model(name, model_data, default_tokens)
        aliases: dict[str, str] = {}
        for alias, base in self.mapping(data.get("aliases", {}), "aliases").items():
            where = f"aliases.{_quote(alias)}"
            if not isinstance(base, str):
                raise self.fail(where, f"must be a model name in quotes, not {base!r}")
            if alias in models:
                raise self.fail(where, "is also a model; a name is either a model or an alias")
            if base not in models:
                raise self.fail(where, f"names {base!r}, which is not a model in this file")
            aliases[alias] = base
        return PriceTable(
            version=version.strip(),
            path=self.path,
            models=MappingProxyType(models),
            aliases=MappingProxyType(aliases),
        )

    def model(
        self, name: str, data: Any, default_tokens: Mapping[str, Mapping[str, int]] | None
    ) -> ModelPrice:
        where = f"models.{_quote(name)}"
        data = self.mapping(data, where)
        self.known_keys(data, _MODEL_KEYS, where)
        source = data.get("source")
        if not isinstance(source, str) or not source.strip():
            raise self.fail(f"{where}.source", "missing: say where the figures come from")
        rates = {
            rate: None if rate not in data else self.money(data[rate], f"{where}.{rate}")
            for rate in TOKEN_RATES
        }
        per_image: Mapping[str, Decimal] = MappingProxyType({})
        output_tokens: Mapping[str, Mapping[str, int]] = MappingProxyType({})
        complexity_tokens: Mapping[str, int] = MappingProxyType({})
        max_output_tokens: int | None = None
        always_high_fidelity = data.get("always_high_fidelity", False)
        if not isinstance(always_high_fidelity, bool):
            raise self.fail(f"{where}.always_high_fidelity", "must be true or false")
        batch = Decimal(1)
        if "batch" in data:
            batch = self.money(data["batch"], f"{where}.batch")
            if not 0 < batch <= 1:
                raise self.fail(
                    f"{where}.batch",
                    f"{data['batch']!r} is not a share of the online price: give one above 0"
                    ' and at most 1, such as "0.5"',
                )
        if "complexity_tokens" in data:
            table = self.mapping(data["complexity_tokens"], f"{where}.complexity_tokens")
            complexity_tokens = MappingProxyType(
                {
                    name: self.tokens(value, f"{where}.complexity_tokens.{_quote(name)}")
                    for name, value in table.items()
                }
            )
        if "per_image" in data:
            per_image = self.per_image(data["per_image"], f"{where}.per_image")
            token_keys = [
                k
                for k in (*TOKEN_RATES, "output_tokens", "complexity_tokens", "max_output_tokens")
                if k in data
            ]
            if token_keys:
                raise self.fail(
                    where,
                    f"has per_image and {', '.join(token_keys)}: a model is billed either per "
                    "image or per token",
                )
        elif rates["image_input"] is None and rates["image_output"] is None:
            # A text model: it authors SVG for image models and is priced by its own usage.
            missing = [rate for rate in _TEXT_MODEL_RATES if rates[rate] is None]
            if "max_output_tokens" not in data:
                missing.append("max_output_tokens")
            if missing:
                raise self.fail(
                    where,
                    f"missing {', '.join(missing)}: a text model (an SVG author) gives text_input,"
                    " text_output and max_output_tokens; an image model gives text_input,"
                    " image_input and image_output (USD per 1M tokens), or per_image",
                )
            max_output_tokens = self.tokens(data["max_output_tokens"], f"{where}.max_output_tokens")
        else:
            missing = [rate for rate in _REQUIRED_TOKEN_RATES if rates[rate] is None]
            if missing:
                raise self.fail(
                    where,
                    f"missing {', '.join(missing)} (USD per 1M tokens), or per_image for a model "
                    "billed per image",
                )
            if "output_tokens" in data:
                output_tokens = self.output_tokens(data["output_tokens"], f"{where}.output_tokens")
            elif default_tokens is not None:
                output_tokens = default_tokens
            else:
                raise self.fail(
                    where, "has no output_tokens table and the file has no [default_output_tokens]"
                )
        return ModelPrice(
            name=name,
            source=source.strip(),
            text_input=rates["text_input"],
            cached_text_input=rates["cached_text_input"],
            image_input=rates["image_input"],
            cached_image_input=rates["cached_image_input"],
            image_output=rates["image_output"],
            text_output=rates["text_output"],
            per_image=per_image,
            output_tokens=output_tokens,
            complexity_tokens=complexity_tokens,
            max_output_tokens=max_output_tokens,
            always_high_fidelity=always_high_fidelity,
            batch=batch,
        )

    def tokens(self, value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.fail(where, f"must be a whole number of tokens, not {value!r}")
        return value

    def per_image(self, data: Any, where: str) -> Mapping[str, Decimal]:
        data = self.mapping(data, where)
        if not data:
            raise self.fail(where, "is empty")
        prices: dict[str, Decimal] = {}
        qualified = set()
        for key, value in data.items():
            quality, size = per_image_key(key)
            bad_quality = key.startswith(":") or (quality is not None and ":" in quality)
            if parse_size(size) is None or bad_quality:
                raise self.fail(
                    f"{where}.{_quote(key)}",
                    'key must be "WxH" or "quality:WxH", e.g. "hd:1024x1792"',
                )
            qualified.add(quality is not None)
            prices[key] = self.money(value, f"{where}.{_quote(key)}")
        if len(qualified) > 1:
            raise self.fail(where, 'mixes "WxH" and "quality:WxH" keys; use one form')
        return MappingProxyType(prices)

    def output_tokens(self, data: Any, where: str) -> Mapping[str, Mapping[str, int]]:
        data = self.mapping(data, where)
        if not data:
            raise self.fail(where, "is empty: give quality rows such as low, medium, high")
        table: dict[str, Mapping[str, int]] = {}
        for quality, row_data in data.items():
            row_where = f"{where}.{_quote(quality)}"
            row_data = self.mapping(row_data, row_where)
            if not row_data:
                raise self.fail(row_where, 'is empty: map sizes to tokens, e.g. "1024x1024" = 272')
            row: dict[str, int] = {}
            for size, tokens in row_data.items():
                entry_where = f"{row_where}.{_quote(size)}"
                if parse_size(size) is None:
                    raise self.fail(entry_where, 'size must be "WxH", e.g. "1024x1024"')
                row[size] = self.tokens(tokens, entry_where)
            table[quality] = MappingProxyType(row)
        return MappingProxyType(table)

    def money(self, value: Any, where: str) -> Decimal:
        if isinstance(value, float):
            raise self.fail(
                where,
                f"{value!r} is a TOML float, which cannot hold money exactly; write prices as "
                'strings, e.g. "0.04"',
            )
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self.fail(where, f'must be a decimal string such as "0.04", not {value!r}')
        try:
            amount = Decimal(value.strip() if isinstance(value, str) else value)
        except InvalidOperation:
            raise self.fail(where, f'{value!r} is not a decimal number such as "0.04"') from None
        if not amount.is_finite():
            raise self.fail(where, f"{value!r} is not a finite amount")
        if amount.is_signed():  # "-0" too: a price is never negative
            raise self.fail(where, f"{value!r} is negative")
        return amount

    def mapping(self, value: Any, where: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(where, f"must be a table, not {value!r}")
        return value

    def known_keys(self, data: Mapping[str, Any], known: frozenset[str], where: str) -> None:
        unknown = sorted(set(data) - known)
        if unknown:
            raise self.fail(
                where,
                f"unknown key {_quote(unknown[0])} (known: {', '.join(sorted(known))})",
            )


def _quote(key: str) -> str:
    """A TOML key as written in the file: bare if it can be, else in double quotes."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else f'"{key}"'


class PriceBook:
    """The price table in force; `reload()` swaps in a new one only if it loads whole."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.table = load_prices(path)

    def reload(self) -> PriceTable:
        """Read the price file again; on any error the table in force stays (PriceError)."""
        self.table = load_prices(self.path)
        return self.table

"""Settings: where they come from, what ships with the package, and that no default but the data
dir's depends on the directory the gateway is run from."""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import SecretStr

from gateway.settings import SHIPPED_CONFIG_EXAMPLE, Settings


def test_the_example_config_lists_every_setting_at_its_default() -> None:
    example = tomllib.loads(SHIPPED_CONFIG_EXAMPLE.read_text())
    defaults = Settings.model_fields
    secrets = {name for name, field in defaults.items() if field.annotation == SecretStr | None}
    # Secrets belong in the environment, and the store and price paths default to computed
    # values: the example names them in comments only.
    commented = secrets | {
        "database_url",
        "prices",
        "cache_store",
        "cache_s3_endpoint_url",
        "journal_dir",
    }
    absent = {"default_model_generations", "default_model_edits"}  # unset by default
    assert set(example) == set(defaults) - commented - absent
    for name, value in example.items():
        default = defaults[name].get_default(call_default_factory=True)
        assert value == (str(default) if isinstance(default, Path) else default) or (
            Path(value) == default
        ), name
    text = SHIPPED_CONFIG_EXAMPLE.read_text()
    for name in commented | absent:
        assert f"# {name}" in text, name


def test_every_setting_is_documented_and_the_reference_pages_stay_short() -> None:
    """docs/configuration.md names every setting as its GATEWAY_* variable; the README stays an
    overview a newcomer reads in minutes, and each reference page under 400 lines."""
    root = Path(__file__).resolve().parent.parent
    reference = (root / "docs" / "configuration.md").read_text()
    undocumented = [
        f"GATEWAY_{name.upper()}"
        for name in Settings.model_fields
        if f"GATEWAY_{name.upper()}" not in reference
        and not name.startswith(("default_model_",))  # documented together, as _EDITS etc.
    ]
    assert undocumented == []
    assert "GATEWAY_DEFAULT_MODEL_GENERATIONS" in reference
    assert len((root / "README.md").read_text().splitlines()) <= 200
    for page in (root / "docs").glob("*.md"):
        assert len(page.read_text().splitlines()) < 400, page.name

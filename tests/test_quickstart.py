"""What `make run` prints: the key, both ways to try it, and the commands as a person in this
directory types them."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.quickstart import as_typed, banner


def test_the_banner_shows_the_key_curl_the_sdk_and_the_admin_state() -> None:
    text = banner("http://127.0.0.1:8080", "sk-gw-abc", "simulator", admin_on=False)
    assert text.count("sk-gw-abc") == 3  # shown, then in the curl and the SDK examples
    assert 'base_url="http://127.0.0.1:8080/v1"' in text
    assert "set GATEWAY_ADMIN_TOKEN" in text
    on = banner("http://h:1", "k", "https://api.openai.com/v1", admin_on=True, rotated=True)
    assert "/console" in on and "rotated" in on


def test_commands_are_shown_as_typed_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "bin" / "gateway"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "/nowhere")
    assert as_typed(script, "gateway") == "bin/gateway"  # below here: relative
    monkeypatch.setenv("PATH", str(script.parent))
    assert as_typed(script, "gateway") == "gateway"  # what the PATH finds: bare
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    monkeypatch.setenv("PATH", "/nowhere")
    assert as_typed(script, "gateway") == str(script)  # elsewhere: the full path

"""The services a Settings describes: one store shared by the cache, the price table its setting
names, nothing started yet."""

from __future__ import annotations

from pathlib import Path

from gateway.runtime.services import Services
from gateway.settings import SHIPPED_PRICES, Settings


def test_services_are_wired_from_the_settings(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, metrics_key_labels=True)
    services = Services.for_settings(settings)
    assert services.settings is settings
    assert services.cache.store is services.store  # one store for the books and the index
    assert services.prices.path == SHIPPED_PRICES and services.prices.table.version
    assert services.metrics.key_labels
    assert services.journal.directory == settings.ledger_journal_dir

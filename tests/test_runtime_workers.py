"""The start-up work done once for all workers: the books settled, the spool and the metrics
directory emptied of what an earlier run left."""

from __future__ import annotations

from pathlib import Path

from gateway.runtime.workers import metrics_dir, prepare
from gateway.settings import Settings


def test_prepare_leaves_a_clean_start_for_the_workers(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, workers=2)
    directory = metrics_dir(settings)
    directory.mkdir(parents=True)
    (directory / "counter_123.db").write_bytes(b"old counts")
    settings.spool_dir.mkdir(parents=True)
    (settings.spool_dir / "body-left-behind").write_bytes(b"x")
    assert prepare(settings) == directory
    assert list(directory.glob("*.db")) == []
    assert list(settings.spool_dir.glob("body-*")) == []
    assert (tmp_path / "gateway.db").exists()  # the store was opened and migrated

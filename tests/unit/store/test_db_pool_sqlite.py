"""warm_pool: the API opens its pool's connections at start, so the first burst of requests does
not open (and set the pragmas of) one each. 50 VUs starting together had their first executes
wait 60-100 ms in the thread pool for that (bench/loadtest.md)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import QueuePool

from rb_store.db import make_engine, warm_pool


def test_every_pooled_connection_is_open_and_back_in_the_pool(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'rb.db'}")
    try:
        pool = engine.pool
        assert isinstance(pool, QueuePool) and pool.checkedin() == 0
        assert warm_pool(engine) == pool.size() == 40
        assert pool.checkedin() == 40 and pool.checkedout() == 0
        with engine.connect() as connection:  # taken from the pool, not opened
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert pool.checkedin() == 40
    finally:
        engine.dispose()

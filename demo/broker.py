"""The demo's embedded Celery broker: kombu's SQLAlchemy transport on a SQLite file in var/.

kombu's file-system transport creates a message file before it writes into it, so under load a
worker can read one that is still empty and die on ``JSONDecodeError``. Here a message is a row:
SQLite lets one writer commit at a time and kombu takes a message (read, then hide) inside
``BEGIN IMMEDIATE``, so a message is either wholly there or absent, and goes to one consumer.

Select it with ``CELERY_BROKER_URL = "sqlite:///<path>"`` and
``CELERY_BROKER_TRANSPORT = "demo.broker:Transport"`` (``demo.settings.base`` does both when
``CELERY_BROKER_URL`` is not set in the environment).
"""
from __future__ import annotations

import os
import sqlite3
from typing import Any

from kombu.transport import sqlalchemy as kombu_sqlalchemy
from kombu.transport.sqlalchemy.models import metadata as kombu_metadata
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError, OperationalError

TRANSPORT = "demo.broker:Transport"
# Seconds a process waits for another one's write to finish before giving up.
BUSY_TIMEOUT_S = 30.0
# Seconds between two looks at the queues when they are empty (kombu's default is 1.0).
POLLING_INTERVAL_S = 0.1
# kombu hides delivered messages instead of deleting them; every this many deliveries a
# consumer deletes the hidden rows, so the file does not grow for ever.
PURGE_EVERY = 500


def broker_url(path: object) -> str:
    """The ``CELERY_BROKER_URL`` of an embedded broker kept in the SQLite file ``path``."""
    return f"sqlite:///{path}"


def _sqlite_configure(dbapi_connection: sqlite3.Connection, connection_record: Any) -> None:
    # WAL: publishers never wait for a consumer's read, nor a consumer for a publisher's commit.
    # The mode is kept in the file; only the first connection ever has to switch it.
    connection_record.info["pid"] = os.getpid()
    cursor = dbapi_connection.cursor()
    try:
        if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            cursor.execute("PRAGMA journal_mode=WAL")
    except sqlite3.OperationalError:
        pass  # another process is switching it at this moment; the next connection sees WAL
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _connection_owner_check(dbapi_connection: sqlite3.Connection, connection_record: Any,
                            connection_proxy: Any) -> None:
    # The Celery worker forks its beat process; a pooled SQLite connection opened before the
    # fork must not be used by both processes. The child discards it and opens its own.
    pid = os.getpid()
    owner = connection_record.info["pid"]
    if owner != pid:
        connection_record.dbapi_connection = connection_proxy.dbapi_connection = None
        raise DisconnectionError(f"SQLite connection opened by process {owner}, used by {pid}")


def _tables_create(engine: Engine) -> None:
    """kombu's tables; two processes starting together may both try, and the loser finds them made."""
    try:
        kombu_metadata.create_all(engine)
    except OperationalError:
        kombu_metadata.create_all(engine)


class Channel(kombu_sqlalchemy.Channel):
    """kombu's SQLAlchemy channel with a SQLite engine fit for several processes."""

    _delivered = 0

    def _engine_from_config(self) -> Engine:
        engine = create_engine(self.connection.client.hostname, connect_args={"timeout": BUSY_TIMEOUT_S})
        event.listen(engine, "connect", _sqlite_configure)
        event.listen(engine, "checkout", _connection_owner_check)
        _tables_create(engine)
        return engine

    def _get(self, queue: str) -> Any:
        payload = super()._get(queue)
        type(self)._delivered += 1
        if self._delivered % PURGE_EVERY == 1:
            self._delivered_purge()
        return payload

    def _delivered_purge(self) -> None:
        message = self.message_cls
        self.session.query(message).filter(message.visible.is_(False)).delete(synchronize_session=False)
        self.session.commit()


class Transport(kombu_sqlalchemy.Transport):
    """The embedded broker's transport (see the module docstring)."""

    Channel = Channel
    polling_interval = POLLING_INTERVAL_S

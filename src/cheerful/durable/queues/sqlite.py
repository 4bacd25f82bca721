"""SqliteQueue: the embedded queue, one SQLite file shared by many processes on one machine.

Safety under concurrency comes from SQLite itself: the file is in WAL mode (readers never
block the writer), every change is one short ``BEGIN IMMEDIATE`` transaction (it takes the
write lock first, so it reads the latest state and no two processes can claim the same row),
and ``busy_timeout`` makes a process wait its turn rather than fail. ``synchronous=NORMAL``
keeps commits fast; a crash of any process loses nothing, a power cut may lose the last
commits (the store, not the queue, is the record of results).

Each process and thread opens its own connection, lazily: the object holds only the path,
so it can be pickled to, or inherited by, a worker process (a changed ``os.getpid()`` means
a fresh connection). The file must be on a local disk: WAL does not work over NFS.

A receipt is ``"<row>.<token>"``, with a new random token per receive; the row keeps the
latest receipt, so an older one is recognised as stale. A message's group is its ``grp``
column (indexed with ``visible_at``, so a receive in one group reads that group only); a
file made before groups existed gets the column on opening, every old message in ``""``.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from cheerful.errors import ConfigError, QueueError

from .base import MAX_MESSAGE_BYTES, DeadLetter, Message, Queue, QueueCounts

__all__ = ["SqliteQueue"]

BUSY_TIMEOUT_S = 60.0

_TABLES = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    body BLOB NOT NULL,
    visible_at REAL NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt TEXT,
    grp TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS dead (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    body BLOB NOT NULL,
    reason TEXT NOT NULL,
    receive_count INTEGER NOT NULL,
    died_at REAL NOT NULL,
    grp TEXT NOT NULL DEFAULT ''
);
"""
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS messages_by_visibility ON messages (visible_at)",
    "CREATE INDEX IF NOT EXISTS messages_by_group ON messages (grp, visible_at)",
)
_ADD_GROUP = "ALTER TABLE {} ADD COLUMN grp TEXT NOT NULL DEFAULT ''"
_ANY_VISIBLE = "SELECT 1 FROM messages WHERE {}visible_at <= ? LIMIT 1"
_VISIBLE = (
    "SELECT seq, id, body, receive_count, grp FROM messages WHERE {}visible_at <= ? "
    "ORDER BY visible_at LIMIT ?"
)
_IN_GROUP = "grp = ? AND "
_CLAIM = (
    "UPDATE messages SET visible_at = ?, receive_count = receive_count + 1, receipt = ? "
    "WHERE seq = ?"
)
_HELD = "SELECT seq, id, body, receive_count, grp FROM messages WHERE seq = ? AND receipt = ?"
_BURY = "INSERT INTO dead (id, body, reason, receive_count, died_at, grp) VALUES (?,?,?,?,?,?)"
_COUNTS = (
    "SELECT (SELECT count(*) FROM messages WHERE {0}visible_at <= ?), "
    "(SELECT count(*) FROM messages WHERE {0}visible_at > ?), "
    "(SELECT count(*) FROM dead{1})"
)
_REDRIVE = "INSERT INTO messages (id, body, visible_at, grp) SELECT id, body, ?, grp FROM dead"


class SqliteQueue(Queue):
    """A queue in the SQLite file at ``path`` (created if missing), safe for many processes.

    ``max_receives``, ``max_message_bytes`` and ``clock`` are as in :class:`Queue`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_receives: int = 10,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            max_receives=max_receives, max_message_bytes=max_message_bytes, clock=clock
        )
        self.path = os.fspath(path)
        self._start()
        with self._translated():
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._create(self._db())

    def __repr__(self) -> str:
        return f"SqliteQueue({self.path!r})"

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("_local", "_lock", "_conns")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._start()

    def integrity_check(self) -> str:
        """Run ``PRAGMA integrity_check``; return its verdict, ``"ok"`` when sound."""
        with self._translated():
            return self._db().execute("PRAGMA integrity_check").fetchone()[0]

    # Hooks of Queue.

    def _send_batch(self, bodies: list[bytes], group: str) -> list[str]:
        ids = [uuid.uuid4().hex for _ in bodies]
        now = self.clock()
        with self._write() as db:
            db.executemany(
                "INSERT INTO messages (id, body, visible_at, grp) VALUES (?, ?, ?, ?)",
                [(id_, body, now, group) for id_, body in zip(ids, bodies, strict=True)],
            )
        return ids

    def _claim(self, n: int, visibility_s: float, group: str | None) -> list[Message]:
        now = self.clock()
        where, params = ("", ()) if group is None else (_IN_GROUP, (group,))
        with self._translated():  # a cheap read first: idle pollers never take the lock
            found = self._db().execute(_ANY_VISIBLE.format(where), (*params, now)).fetchone()
            if found is None:
                return []
        with self._write() as db:
            return self._claim_rows(db, n, now, now + visibility_s, where, params)

    def _extend_batch(self, receipts: list[str], visibility_s: float) -> list[bool]:
        until = self.clock() + visibility_s
        sql = "UPDATE messages SET visible_at = ? WHERE seq = ? AND receipt = ?"
        with self._write() as db:
            return [db.execute(sql, (until, _seq(r), r)).rowcount == 1 for r in receipts]

    def _delete_batch(self, receipts: list[str]) -> list[bool]:
        sql = "DELETE FROM messages WHERE seq = ? AND receipt = ?"
        with self._write() as db:
            return [db.execute(sql, (_seq(r), r)).rowcount == 1 for r in receipts]

    def _dead_letter(self, receipt: str, reason: str) -> bool:
        with self._write() as db:
            row = db.execute(_HELD, (_seq(receipt), receipt)).fetchone()
            if row is not None:
                self._bury(db, [row], lambda _count: reason)
            return row is not None

    def _counts(self, group: str | None) -> QueueCounts:
        now = self.clock()
        if group is None:
            sql, params = _COUNTS.format("", ""), (now, now)
        else:
            sql, params = _COUNTS.format(_IN_GROUP, " WHERE grp = ?"), (group, now) * 2 + (group,)
        with self._translated():
            return QueueCounts(*self._db().execute(sql, params).fetchone())

    def _dead_letters(self, limit: int, group: str | None) -> list[DeadLetter]:
        where, params = ("", ()) if group is None else (" WHERE grp = ?", (group,))
        sql = f"SELECT id, body, reason, receive_count, grp FROM dead{where} ORDER BY seq LIMIT ?"
        with self._translated():
            return [DeadLetter(*row) for row in self._db().execute(sql, (*params, limit))]

    def _redrive(self, ids: list[str] | None, group: str | None) -> int:
        now = self.clock()
        where, params = ("", ()) if group is None else (" WHERE grp = ?", (group,))
        with self._write() as db:
            if ids is None:
                db.execute(_REDRIVE + where, (now, *params))
                return db.execute("DELETE FROM dead" + where, params).rowcount
            return sum(self._redrive_one(db, id_, now, group) for id_ in ids)

    def _delete_group(self, group: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM messages WHERE grp = ?", (group,))
            db.execute("DELETE FROM dead WHERE grp = ?", (group,))

    def _purge(self, dead: bool) -> None:
        with self._write() as db:
            db.execute("DELETE FROM messages")
            if dead:
                db.execute("DELETE FROM dead")

    def _close(self) -> None:
        with self._lock:
            mine = [conn for pid, conn in self._conns if pid == os.getpid()]
            self._conns = [(pid, conn) for pid, conn in self._conns if pid != os.getpid()]
        self._local = threading.local()
        for conn in mine:
            conn.close()

    # Claiming and burying, inside a write transaction.

    def _claim_rows(
        self, db: sqlite3.Connection, n: int, now: float, until: float, where: str, params: tuple
    ) -> list:
        token, claimed, sql = secrets.token_hex(8), [], _VISIBLE.format(where)
        while len(claimed) < n:
            rows = db.execute(sql, (*params, now, n - len(claimed))).fetchall()
            fresh = [row for row in rows if row[3] < self.max_receives]
            spent = [row for row in rows if row[3] >= self.max_receives]
            claimed += self._mark(db, fresh, until, token)
            self._bury(db, spent, _too_many_receives)
            if not spent:
                break
        return claimed

    def _mark(self, db: sqlite3.Connection, rows: list, until: float, token: str) -> list:
        held = [Message(i, body, f"{seq}.{token}", n + 1, g) for seq, i, body, n, g in rows]
        claims = [(until, m.receipt, row[0]) for m, row in zip(held, rows, strict=True)]
        db.executemany(_CLAIM, claims)
        return held

    def _bury(self, db: sqlite3.Connection, rows: list, reason: Callable[[int], str]) -> None:
        if not rows:
            return
        now = self.clock()
        buried = [(id_, body, reason(c), c, now, g) for _, id_, body, c, g in rows]
        db.executemany(_BURY, buried)
        db.executemany("DELETE FROM messages WHERE seq = ?", [(row[0],) for row in rows])

    def _redrive_one(self, db: sqlite3.Connection, id_: str, now: float, group: str | None) -> int:
        where, params = " WHERE id = ?", (id_,)
        if group is not None:
            where, params = where + " AND grp = ?", (id_, group)
        db.execute(_REDRIVE + where, (now, *params))
        return db.execute("DELETE FROM dead" + where, params).rowcount

    # Connections, transactions and the one place sqlite3 errors are translated.

    def _start(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: list[tuple[int, sqlite3.Connection]] = []

    def _db(self) -> sqlite3.Connection:
        local = self._local
        if getattr(local, "pid", None) != os.getpid():  # first use here, or after a fork
            local.conn, local.pid = self._connect(), os.getpid()
        return local.conn

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA synchronous = NORMAL")
        with self._lock:
            self._conns.append((os.getpid(), conn))
        return conn

    def _create(self, db: sqlite3.Connection) -> None:
        if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            db.execute("PRAGMA journal_mode = WAL")
        db.executescript(_TABLES)
        with self._write() as db:  # add what a file of an older version lacks, once
            for table in ("messages", "dead"):
                columns = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                if "grp" not in columns:
                    db.execute(_ADD_GROUP.format(table))
            for index in _INDEXES:
                db.execute(index)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._translated():
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except (sqlite3.Error, OSError) as exc:
            raise QueueError(f"sqlite queue {self.path}: {exc}") from exc


def _seq(receipt: str) -> int:
    head, dot, token = receipt.partition(".")
    if not (head.isdigit() and dot and token):
        raise ConfigError(f"{receipt!r} is not a receipt of a SqliteQueue")
    return int(head)


def _too_many_receives(count: int) -> str:
    return f"received {count} times without being deleted (worker died or gave up)"

"""The prediction log and the labels that come back later (feedback).

Every row the server answers is logged with its request id, the model version that answered
and the input; shadow answers go in the same table with role "shadow". Labels posted later
point at the live prediction they label. The line's flywheel reads labelled rows with
`labelled_since(cursor)` and watches `recent_accuracy(model, window)`.

Storage: SQLAlchemy 2, SQLite under `$AIFACTORY_HOME/predictions.db` by default (WAL, safe
for the server and the pipeline at once) or any URL (PostgreSQL); the schema is created only
by this package's Alembic migration, with its own version table.
"""

from __future__ import annotations

import contextlib
import fcntl
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from aifactory.core.errors import AifactoryError, NotFound, SpecError
from aifactory.dbutil import create_engine
from aifactory.serve.outputs import predicted_classes

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
LIVE, SHADOW = "live", "shadow"

_meta = sa.MetaData()
predictions = sa.Table(
    "serve_predictions",
    _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(128), nullable=False),
    sa.Column("row", sa.Integer, nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("input", sa.LargeBinary, nullable=False),  # the row's inputs, float32
    sa.Column("predicted", sa.Integer, nullable=True),  # the class answered; NULL for regression
    sa.Column("probs", sa.LargeBinary, nullable=False),  # the outputs, float32: class probabilities or values
    sa.Column("created_at", sa.Float, nullable=False),  # unix seconds
)
feedback = sa.Table(
    "serve_feedback",
    _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),  # the flywheel's cursor
    sa.Column("prediction_id", sa.Integer, nullable=False, unique=True),
    sa.Column("request_id", sa.String(128), nullable=False),
    sa.Column("row", sa.Integer, nullable=False),
    sa.Column("label", sa.Float, nullable=False),  # a class, or a regression target's value
    sa.Column("created_at", sa.Float, nullable=False),
)


class Conflict(AifactoryError):
    """The thing asked for exists already (a label posted twice) -> 409."""


@dataclass(frozen=True, slots=True)
class Answer:
    """One request's answer as logged: x (n, F) in, outputs (n, K) out, by model@version."""

    request_id: str
    role: str  # LIVE or SHADOW
    model: str
    version: int
    x: np.ndarray
    probs: np.ndarray
    created_at: float  # unix seconds
    classes: list[int] | None = None  # a classifier's labels in output order (None: 0, 1, 2, ...)
    regression: bool = False  # outputs are values: no class is predicted

    def rows(self) -> list[tuple[object, ...]]:
        """One tuple per row, in `_INSERT` column order."""
        x = np.ascontiguousarray(self.x, dtype="<f4")
        probs = np.ascontiguousarray(self.probs, dtype="<f4")
        predicted: list[int] | list[None] = (
            [None] * len(x) if self.regression else predicted_classes(probs, self.classes)
        )
        return [
            (
                self.request_id,
                i,
                self.role,
                self.model,
                self.version,
                x[i].tobytes(),
                predicted[i],
                probs[i].tobytes(),
                self.created_at,
            )
            for i in range(len(x))
        ]


_COLUMNS = ("request_id", "row", "role", "model", "version", "input", "predicted", "probs", "created_at")


@dataclass(frozen=True, slots=True)
class LoggedAnswer:
    """A logged answer as read back (shadow log, audits)."""

    request_id: str
    row: int
    role: str
    model: str
    version: int
    predicted: int | None
    probs: np.ndarray  # (K,) outputs
    created_at: float


def default_url(home: Path) -> str:
    return f"sqlite:///{Path(home) / 'predictions.db'}"


class FeedbackLog:
    """Prediction log + feedback labels in one database; usable from several threads and processes."""

    def __init__(self, home: Path, url: str | None = None) -> None:
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.url = url or default_url(self.home)
        # Readers (the flywheel) never block the server's writes: WAL.
        self.engine = create_engine(self.url, 30_000, any_thread=True)
        mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        self._insert = (
            f"INSERT INTO serve_predictions ({', '.join(_COLUMNS)}) VALUES ({', '.join([mark] * len(_COLUMNS))})"
        )
        self._migrate()

    def close(self) -> None:
        self.engine.dispose()

    def _migrate(self) -> None:
        """Run the Alembic migration; a lock keeps two processes opening the log at once from racing."""
        from alembic import command
        from alembic.config import Config

        with self._migration_lock() as conn:
            cfg = Config()
            cfg.set_main_option("script_location", str(MIGRATIONS))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            conn.commit()

    @contextlib.contextmanager
    def _migration_lock(self) -> Iterator[Connection]:
        if self.engine.dialect.name == "postgresql":
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT pg_advisory_lock(hashtext('aifactory.serve.migrate'))"))
                conn.commit()
                try:
                    yield conn
                finally:
                    conn.execute(sa.text("SELECT pg_advisory_unlock(hashtext('aifactory.serve.migrate'))"))
                    conn.commit()
            return
        with open(self.home / ".predictions.migrate.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            with self.engine.connect() as conn:
                yield conn

    def log(self, answers: Sequence[Answer]) -> None:
        """Insert the rows of these answers in one transaction.

        A plain DB-API executemany: at thousands of rows a second SQLAlchemy's per-row
        parameter processing would cost more than the insert itself.
        """
        rows = [row for answer in answers for row in answer.rows()]
        if not rows:
            return
        with self.engine.begin() as conn:
            conn.exec_driver_sql(self._insert, rows)

    def add_feedback(self, request_id: str, labels: Sequence[float], now: float | None = None) -> int:
        """Label the live answer(s) of `request_id`, one label per row; returns how many rows were labelled."""
        now = time.time() if now is None else now
        with self.engine.begin() as conn:
            ids = self._live_ids(conn, request_id)
            if not ids:
                raise NotFound(f"unknown request_id {request_id!r}: no prediction was logged under it")
            if len(labels) != len(ids):
                raise SpecError("labels", f"request {request_id!r} had {len(ids)} row(s), got {len(labels)} label(s)")
            done = conn.execute(sa.select(feedback.c.row).where(feedback.c.prediction_id.in_(ids.values()))).first()
            if done is not None:
                raise Conflict(f"request {request_id!r} row {done.row} is already labelled")
            conn.execute(
                feedback.insert(),
                [
                    {
                        "prediction_id": ids[row],
                        "request_id": request_id,
                        "row": row,
                        "label": float(lab),
                        "created_at": now,
                    }
                    for row, lab in enumerate(labels)
                ],
            )
        return len(labels)

    @staticmethod
    def _live_ids(conn: Connection, request_id: str) -> dict[int, int]:
        """row -> id of the latest live prediction logged under request_id."""
        q = sa.select(predictions.c.row, sa.func.max(predictions.c.id)).where(
            predictions.c.request_id == request_id, predictions.c.role == LIVE
        )
        return {row: pid for row, pid in conn.execute(q.group_by(predictions.c.row))}

    def labelled_since(self, cursor: int = 0, model: str | None = None) -> tuple[np.ndarray, np.ndarray, int]:
        """Labelled rows (of `model`'s answers) posted after `cursor`: X (N, F) float32, y (N,) float64,
        and the cursor to pass next."""
        q = (
            sa.select(feedback.c.id, predictions.c.input, feedback.c.label)
            .join(predictions, predictions.c.id == feedback.c.prediction_id)
            .where(feedback.c.id > cursor)
            .order_by(feedback.c.id)
        )
        if model is not None:
            q = q.where(predictions.c.model == model)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        if not rows:
            return np.zeros((0, 0), dtype=np.float32), np.zeros((0,), dtype=np.float64), cursor
        x = np.stack([np.frombuffer(r.input, dtype="<f4") for r in rows]).astype(np.float32)
        y = np.array([r.label for r in rows], dtype=np.float64)
        return x, y, int(rows[-1].id)

    def recent_accuracy(self, model: str, window: int = 200, version: int | None = None) -> float | None:
        """Share of the last `window` labelled live answers of `model` (and `version`) that were right; None if none."""
        if window < 1:
            raise SpecError("window", f"must be >= 1, got {window}")
        q = (
            sa.select(predictions.c.predicted, feedback.c.label)
            .join(predictions, predictions.c.id == feedback.c.prediction_id)
            .where(predictions.c.model == model)
        )
        if version is not None:
            q = q.where(predictions.c.version == version)
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(feedback.c.id.desc()).limit(window)).all()
        if not rows or rows[0].predicted is None:  # none yet, or a regression model (no classes)
            return None
        return sum(r.predicted == r.label for r in rows) / len(rows)

    def answers(
        self, request_id: str | None = None, role: str | None = None, limit: int = 10_000
    ) -> list[LoggedAnswer]:
        """Logged answers, oldest first, optionally of one request and/or one role ("live" or "shadow")."""
        q = sa.select(predictions).order_by(predictions.c.id).limit(limit)
        if request_id is not None:
            q = q.where(predictions.c.request_id == request_id)
        if role is not None:
            q = q.where(predictions.c.role == role)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [
            LoggedAnswer(
                r.request_id,
                r.row,
                r.role,
                r.model,
                r.version,
                r.predicted,
                np.frombuffer(r.probs, "<f4"),
                r.created_at,
            )
            for r in rows
        ]

    def count(self, role: str = LIVE) -> int:
        """How many rows were answered in `role`."""
        with self.engine.connect() as conn:
            q = sa.select(sa.func.count()).select_from(predictions).where(predictions.c.role == role)
            return int(conn.execute(q).scalar_one())


class LogWriter:
    """Writes prediction records on a background thread, many per transaction, off the request path.

    `put` only appends to a list under a lock: waking the writer thread for every answer (a
    `queue.Queue` notify, a thread switch, a small transaction) cost ~40 us of CPU a request
    under load, more than the model. The thread wakes every `interval_s` (or at once for
    `flush` and `close`) and writes what gathered, in transactions of up to `chunk` answers.
    """

    def __init__(
        self, log: FeedbackLog, max_bytes: int = 256 << 20, interval_s: float = 0.05, chunk: int = 2000
    ) -> None:
        self.log = log
        # Inputs and outputs waiting, in bytes: beyond it answers are dropped, not kept without bound.
        # Bytes, not answers: one answer may hold 1,024 rows of 100,000 values.
        self.max_bytes = max_bytes
        self.interval_s = interval_s
        self.chunk = chunk
        self.dropped = 0  # rows lost because the log fell behind by max_bytes
        self.errors = 0
        self._lock = threading.Lock()
        self._pending: list[Answer] = []
        self._pending_bytes = 0
        self._put = 0  # answers accepted so far
        self._closing = False
        self._wake = threading.Event()
        self._written = threading.Condition()
        self._done = 0  # answers written (or failed) so far
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def put(self, answer: Answer) -> None:
        size = answer.x.nbytes + answer.probs.nbytes
        with self._lock:
            if self._pending_bytes + size > self.max_bytes:
                self.dropped += len(answer.x)
                return
            self._pending.append(answer)
            self._pending_bytes += size
            self._put += 1

    def flush(self) -> None:
        """Block until every record put so far is in the database."""
        with self._lock:
            target = self._put
        self._wake.set()
        with self._written:
            self._written.wait_for(lambda: self._done >= target or not self._thread.is_alive())

    def close(self) -> None:
        """Write what is pending and stop the thread."""
        with self._lock:
            self._closing = True
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            with self._lock:
                items, self._pending, self._pending_bytes = self._pending, [], 0
                closing = self._closing
            for start in range(0, len(items), self.chunk):
                try:
                    self.log.log(items[start : start + self.chunk])
                except Exception:  # a failed write must not stop logging; counted and visible in /v1/models
                    self.errors += 1
            if items:
                with self._written:
                    self._done += len(items)
                    self._written.notify_all()
            if closing:
                return

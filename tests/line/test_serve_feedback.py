"""The prediction log and feedback (`FeedbackLog`) on real SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from aifactory.core.errors import NotFound, SpecError
from aifactory.serve.feedback import LIVE, SHADOW, Answer, Conflict, FeedbackLog, LogWriter
from aifactory.serve.outputs import outputs

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, home: Path) -> Iterator[str | None]:
    """None (SQLite under home) or a fresh PostgreSQL schema, dropped afterwards; PG skipped if absent."""
    if request.param == "sqlite":
        yield None
        return
    engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 2})
    schema = f"serve_{uuid.uuid4().hex[:12]}"
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    except sa.exc.OperationalError:
        pytest.skip("PostgreSQL does not answer at 127.0.0.1:5432")
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()


@pytest.fixture
def flog(home: Path, db_url: str | None) -> Iterator[FeedbackLog]:
    log = FeedbackLog(home, db_url)
    yield log
    log.close()


def answer(request_id: str, n: int, version: int = 1, role: str = LIVE, seed: int = 0) -> Answer:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 16, (n, 64)).astype(np.float32)
    probs = rng.dirichlet(np.ones(10), n).astype(np.float32)
    return Answer(request_id, role, "digits", version, x, probs, 1000.0)


def test_labels_join_the_logged_inputs_in_order(flog: FeedbackLog) -> None:
    a, b = answer("a", 3, seed=1), answer("b", 1, seed=2)
    flog.log([a, b, answer("a", 3, role=SHADOW, version=2, seed=3)])
    assert flog.add_feedback("b", [4]) == 1
    assert flog.add_feedback("a", [7, 8, 9]) == 3
    x, y, cursor = flog.labelled_since(0)
    assert x.shape == (4, 64) and x.dtype == np.float32
    np.testing.assert_array_equal(x, np.concatenate([b.x, a.x]))  # order of the labels, live inputs
    assert y.tolist() == [4, 7, 8, 9]
    x2, y2, cursor2 = flog.labelled_since(cursor)
    assert len(x2) == 0 and y2.shape == (0,) and cursor2 == cursor
    flog.log([answer("c", 1, seed=4)])
    flog.add_feedback("c", [1])
    _, y3, cursor3 = flog.labelled_since(cursor)
    assert y3.tolist() == [1] and cursor3 > cursor


def test_recent_accuracy_over_the_last_window(flog: FeedbackLog) -> None:
    assert flog.recent_accuracy("digits", 10) is None
    answers = [answer(f"r{i}", 1, version=1 + i // 4, seed=i) for i in range(8)]
    flog.log(answers)
    predicted = [int(a.probs.argmax()) for a in answers]
    truth = [p if i % 2 == 0 else (p + 1) % 10 for i, p in enumerate(predicted)]  # every other one wrong
    truth[7] = predicted[7]
    for a, label in zip(answers, truth, strict=True):
        flog.add_feedback(a.request_id, [label])
    assert flog.recent_accuracy("digits", 100) == pytest.approx(5 / 8)
    assert flog.recent_accuracy("digits", 2) == pytest.approx(1.0)  # r6 right, r7 right
    assert flog.recent_accuracy("digits", 100, version=1) == pytest.approx(2 / 4)
    assert flog.recent_accuracy("other", 100) is None
    with pytest.raises(SpecError, match="window"):
        flog.recent_accuracy("digits", 0)


def test_bad_feedback_changes_nothing(flog: FeedbackLog) -> None:
    flog.log([answer("a", 2)])
    with pytest.raises(NotFound, match="nope"):
        flog.add_feedback("nope", [1])
    with pytest.raises(SpecError, match="2 row"):
        flog.add_feedback("a", [1])
    assert flog.labelled_since(0)[1].size == 0
    flog.add_feedback("a", [1, 2])
    with pytest.raises(Conflict, match="already labelled"):
        flog.add_feedback("a", [3, 4])
    assert flog.labelled_since(0)[1].tolist() == [1, 2]


def test_shadow_answers_are_logged_apart(flog: FeedbackLog) -> None:
    flog.log([answer("a", 2, version=1), answer("a", 2, version=2, role=SHADOW, seed=5)])
    shadow = flog.answers(request_id="a", role=SHADOW)
    assert [(s.row, s.version) for s in shadow] == [(0, 2), (1, 2)]
    assert flog.count(LIVE) == 2 and flog.count(SHADOW) == 2
    flog.log([answer("s", 1, role=SHADOW)])
    with pytest.raises(NotFound):  # a shadow answer alone cannot be labelled
        flog.add_feedback("s", [1])


def test_writer_flushes_everything_put(flog: FeedbackLog) -> None:
    writer = LogWriter(flog)
    for i in range(300):
        writer.put(answer(f"w{i}", 1 + i % 2, seed=i))
    writer.flush()
    assert flog.count() == 450
    writer.close()
    assert writer.dropped == 0 and writer.errors == 0


def test_the_log_and_the_answer_name_the_same_class_for_labels_that_are_not_0_to_n(flog: FeedbackLog) -> None:
    probs = np.array([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1], [0.2, 0.3, 0.5]], dtype=np.float32)
    x = np.zeros((3, 4), dtype=np.float32)
    served = outputs(probs, [3, 5, 7])
    assert served.predictions == [5, 3, 7]
    assert outputs(probs, [0, 1, 2]).predictions == [1, 0, 2]
    flog.log([Answer("c", LIVE, "m", 1, x, probs, 1.0, classes=[3, 5, 7])])
    assert [a.predicted for a in flog.answers("c")] == served.predictions


def test_writer_gathers_answers_into_few_transactions_and_drops_beyond_its_queue(
    flog: FeedbackLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    write = flog.log
    monkeypatch.setattr(flog, "log", lambda answers: (calls.append(len(answers)), write(answers))[1])
    size = answer("size", 2).x.nbytes + answer("size", 2).probs.nbytes
    writer = LogWriter(flog, max_bytes=50 * size, interval_s=60.0)  # room for 50 answers; wakes only when asked
    for i in range(60):
        writer.put(answer(f"q{i}", 2, seed=i))
    assert calls == [] and flog.count() == 0  # nothing written per answer
    writer.flush()
    assert calls == [50] and flog.count() == 100 and writer.dropped == 20  # 10 answers of 2 rows dropped
    writer.put(answer("last", 1))
    writer.close()  # what is pending is written before the thread stops
    assert calls == [50, 1] and flog.count() == 101 and writer.errors == 0


def test_two_opens_at_once_migrate_once(home: Path, db_url: str | None) -> None:
    logs: list[FeedbackLog] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            logs.append(FeedbackLog(home, db_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    logs[0].log([answer("x", 1)])
    assert all(log.count() == 1 for log in logs)
    for log in logs:
        log.close()

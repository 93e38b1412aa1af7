"""The shipped FlexIT query CSV and its loader."""

import collections
import filecmp
from pathlib import Path

import pytest

from editrt.errors import InputError
from editrt.eval.queries import load_queries, queries_csv_path, read_queries, target_class_ids

SHARED_CSV = Path("/work/shared/data/flexit_queries.csv")


def test_csv_counts():
    qs = read_queries()
    assert len(qs) == 2184
    assert sum(q.is_test for q in qs) == 1092
    assert len(target_class_ids(qs)) == 273
    per_target = collections.Counter((q.target_id, q.is_test) for q in qs)
    assert set(per_target.values()) == {4}  # 4 test + 4 dev queries per target class
    assert len({q.query_id for q in qs}) == 2184


def test_splits_and_limit():
    test, dev = load_queries("test"), load_queries("dev")
    assert len(test) == len(dev) == 1092
    assert not {q.query_id for q in test} & {q.query_id for q in dev}
    assert [q.query_id for q in test] == sorted(q.query_id for q in test)
    first = load_queries("test", limit=5)
    assert first == test[:5]
    q = first[0]
    assert q.path.startswith("n") and q.path.endswith(".JPEG") and q.source and q.target
    with pytest.raises(InputError):
        load_queries("val")
    with pytest.raises(InputError):
        load_queries("test", limit=0)


@pytest.mark.skipif(not SHARED_CSV.exists(), reason="project data folder not present")
def test_shipped_copy_is_unchanged():
    assert filecmp.cmp(queries_csv_path(), SHARED_CSV, shallow=False)
    assert (queries_csv_path().parent / "flexit_queries.csv.LICENSE").read_text().count("MIT License") == 1


def test_malformed_csv(tmp_path):
    bad = tmp_path / "q.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="not a FlexIT query CSV"):
        read_queries(bad)

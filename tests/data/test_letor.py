"""Tests of the LETOR / LightGBM ranking-file reader against scikit-learn's svmlight loader."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_svmlight_file

from pairkit.data.letor import pad_lists, read_letor
from pairkit.errors import InputError
from tests.shared_data import shared_path


@pytest.mark.parametrize("name", ["rank.train", "rank.test"])
def test_lightgbm_files_match_sklearn(name):
    path = shared_path("ltr", name)
    sizes = np.loadtxt(str(path) + ".query", dtype=int)
    data = read_letor(path, n_features=300, dtype=np.float64)
    x, y = load_svmlight_file(str(path), n_features=300)
    assert data.n_queries == len(sizes) and data.n_features == 300
    np.testing.assert_array_equal(data.list_sizes, sizes)
    assert data.features.shape == (len(sizes), sizes.max(), 300)
    # mask in row-major order visits the documents in file order
    np.testing.assert_array_equal(data.features[data.mask], x.toarray())
    np.testing.assert_array_equal(data.labels[data.mask], y)
    assert (data.features[~data.mask] == 0).all() and (data.labels[~data.mask] == 0).all()
    np.testing.assert_array_equal(data.qids, np.arange(len(sizes)).astype(str))


def test_shared_files_sizes():
    train = read_letor(shared_path("ltr", "rank.train"))
    assert train.mask.sum() == 3005 and train.n_queries == 201
    assert set(np.unique(train.labels[train.mask])) == {0.0, 1.0, 2.0, 3.0, 4.0}


def _write(tmp_path, text, name="data.txt"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_qid_format_with_comments_and_blank_lines(tmp_path):
    path = _write(
        tmp_path,
        "2 qid:10 1:0.5 3:1.5 # doc a\n0 qid:10 2:-1\n\n# a comment line\n1 qid:7 1:2 2:3 3:4\n",
    )
    data = read_letor(path)
    np.testing.assert_array_equal(data.qids, ["10", "7"])
    np.testing.assert_array_equal(data.mask, [[True, True], [True, False]])
    np.testing.assert_array_equal(data.labels, [[2, 0], [1, 0]])
    np.testing.assert_allclose(data.features[0], [[0.5, 0, 1.5], [0, -1, 0]])
    np.testing.assert_allclose(data.features[1, 0], [2, 3, 4])
    x, y, q = load_svmlight_file(str(path), query_id=True)
    np.testing.assert_allclose(data.features[data.mask], x.toarray())


def test_zero_based_and_explicit_query_file(tmp_path):
    path = _write(tmp_path, "1 0:1 1:2\n0 1:5\n3 0:7\n")
    qf = _write(tmp_path, "2\n1\n", "sizes.txt")
    data = read_letor(path, query_file=qf, zero_based=True)
    np.testing.assert_allclose(data.features[0], [[1, 2], [0, 5]])
    np.testing.assert_allclose(data.features[1, 0], [7, 0])
    np.testing.assert_array_equal(data.list_sizes, [2, 1])


def test_pad_lists():
    values = np.arange(6).reshape(6, 1)
    padded, mask = pad_lists(values, [3, 1, 2])
    np.testing.assert_array_equal(mask, [[1, 1, 1], [1, 0, 0], [1, 1, 0]])
    np.testing.assert_array_equal(padded[..., 0], [[0, 1, 2], [3, 0, 0], [4, 5, 0]])
    with pytest.raises(InputError, match="sizes"):
        pad_lists(values, [3, 2])


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("1 qid:1 1:0.5\nx qid:1 1:1\n", r"line 2: label 'x' is not a number"),
        ("1 qid:1 1:0.5\n1 qid:1 1-0.5\n", r"line 2: token '1-0.5' is not <index>:<value>"),
        ("1 qid:1 0:0.5\n", r"line 1: feature index 0 .* out of range .*zero_based=True"),
        ("1 qid:1 a:0.5\n", r"line 1: feature index 'a'"),
        ("1 qid:1 1:abc\n", r"line 1: value of feature 1 'abc' is not a number"),
        ("1 qid:1 1:nan\n", r"line 1: value of feature 1 'nan' is not finite"),
        ("1 qid:1 2:1 2:3\n", r"line 1: feature index 2 appears twice"),
        ("1 qid:1 1:1\n0 qid:2 1:1\n0 qid:1 1:1\n", r"line 3: documents of qid:1 are not consecutive"),
        ("1 qid:1 1:1\n0 1:1\n", r"line 2: some lines have qid:"),
        ("1 qid: 1:1\n", r"line 1: empty query id"),
        ("# only a comment\n", r"no data lines"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, text, match):
    path = _write(tmp_path, text)
    with pytest.raises(InputError, match=match) as err:
        read_letor(path)
    assert str(path) in str(err.value)


def test_feature_beyond_n_features(tmp_path):
    path = _write(tmp_path, "1 qid:1 1:1 5:2\n")
    with pytest.raises(InputError, match=r"line 1: feature index 5 .* exceeds n_features=4"):
        read_letor(path, n_features=4)


def test_query_file_problems(tmp_path):
    path = _write(tmp_path, "1 1:1\n0 1:2\n1 1:3\n")
    with pytest.raises(InputError, match=r"data.txt.query does not exist"):
        read_letor(path)
    _write(tmp_path, "2\n2\n", "data.txt.query")
    with pytest.raises(InputError, match=r"sum to 4 documents but the data file has 3"):
        read_letor(path)
    _write(tmp_path, "2\nbad\n", "data.txt.query")
    with pytest.raises(InputError, match=r"data.txt.query, line 2: 'bad' is not a document count"):
        read_letor(path)
    _write(tmp_path, "3\n0\n", "data.txt.query")
    with pytest.raises(InputError, match=r"line 2: document count 0 must be positive"):
        read_letor(path)
    qid_path = _write(tmp_path, "1 qid:1 1:1\n", "q.txt")
    with pytest.raises(InputError, match="ambiguous"):
        read_letor(qid_path, query_file=tmp_path / "data.txt.query")
    with pytest.raises(InputError, match="no such file"):
        read_letor(tmp_path / "missing.txt")

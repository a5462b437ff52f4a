"""The walk from a CSV of comparisons to the printed leaderboard checks each value exactly once (issue 11): the
model's spec checks ``--prior``/``--level`` before the data are read, and the fit (and each bootstrap replicate)
takes them as checked."""

import collections

import pytest
from typer.testing import CliRunner

import pairkit._spec
import pairkit.cli.rank  # noqa: F401  (imported first: import-time checks of declared defaults are not counted)
import pairkit.rating.registry  # noqa: F401
from pairkit.cli import app


@pytest.fixture
def checks(monkeypatch):
    counts: collections.Counter = collections.Counter()
    check, parse = pairkit._spec.Option.check, pairkit._spec.Option.parse

    def counted_check(self, value, **kw):
        counts[self.name] += 1
        return check(self, value, **kw)

    def counted_parse(self, text, **kw):  # ``--option NAME=VALUE``: parsed and checked in one go
        counts[self.name] += 1
        return parse(self, text, **kw)

    monkeypatch.setattr(pairkit._spec.Option, "check", counted_check)
    monkeypatch.setattr(pairkit._spec.Option, "parse", counted_parse)
    return counts


@pytest.fixture
def games(tmp_path):
    path = tmp_path / "games.csv"
    path.write_text("a,b,outcome\n" + "x,y,1\ny,z,0.5\nz,x,0\nx,z,1\ny,x,1\nz,y,1\nx,y,0\n" * 5)
    return path


@pytest.mark.parametrize(
    "extra",
    [
        ["--prior", "1", "--level", "0.9"],
        ["--prior", "1", "--bootstrap", "20"],  # Bradley–Terry's fast bootstrap
        ["--model", "davidson", "--prior", "1", "--bootstrap", "5"],  # a refit per replicate
        ["--model", "elo", "--option", "k=16", "--bootstrap", "5", "--level", "0.8"],  # level: the bootstrap's
        ["--model", "pagerank", "--option", "damping=0.8"],
    ],
)
def test_csv_to_printed_leaderboard_checks_each_value_once(games, checks, extra):
    res = CliRunner().invoke(app, ["rank", str(games), *extra])
    assert res.exit_code == 0, res.output
    given = {a[2:].replace("-", "_") for a in extra if a.startswith("--") and a not in ("--option", "--model")}
    given |= {a.split("=")[0] for a in extra if "=" in a}
    assert {name for name, n in checks.items() if n == 1} >= given - {"bootstrap"}
    twice = {name: n for name, n in checks.items() if n > 1}
    assert not twice, f"checked more than once on the walk: {twice}"
    if "--bootstrap" in extra:  # one value under two names: the flag is checked, the bootstrap's n_boot is not
        assert checks["--bootstrap"] == 1 and checks["n_boot"] == 0 and checks["by"] == 0, dict(checks)


def test_a_bad_prior_fails_before_the_data_are_read(tmp_path, checks):
    missing = tmp_path / "not-there.csv"
    res = CliRunner().invoke(app, ["rank", str(missing), "--prior", "-1"])
    assert res.exit_code != 0 and "prior must be a number >= 0, got -1.0" in res.output
    assert checks["prior"] == 1

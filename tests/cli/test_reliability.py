"""Regressions for the faults of the CLI/judge fuzz (issue 18): each case is built here from its failing input."""

import warnings

import pytest
from typer.testing import CliRunner

from pairkit.cli import app
from pairkit.cli._common import reported_errors
from pairkit.errors import InputError, PairkitWarning

runner = CliRunner()


@pytest.mark.timeout(60)
def test_third_party_warnings_are_shown_once_each_and_do_not_grow_without_bound(tmp_path):
    """Replaying a warning inside the recording block re-recorded it for ever (20 GB, then the kernel)."""
    path = tmp_path / "cjk.csv"
    path.write_text("winner,loser\n模型甲,🙂\n🙂,模型乙\n模型乙,模型甲\n模型甲,模型乙\n", encoding="utf-8")
    result = runner.invoke(app, ["rank", str(path), "--prior", "1", "--plot", str(tmp_path / "b.png")])
    assert result.exit_code == 0, result.output
    assert "missing from font" in result.output
    assert (tmp_path / "b.png").stat().st_size > 0


@pytest.mark.timeout(30)
def test_reported_errors_replays_each_distinct_warning_once_with_a_count(capsys):
    with reported_errors():
        warnings.simplefilter("always", UserWarning)
        for _ in range(1000):
            warnings.warn("third-party trouble", UserWarning, stacklevel=1)
        warnings.warn("a pairkit note", PairkitWarning, stacklevel=1)
    err = capsys.readouterr().err
    assert err.count("third-party trouble") == 1 and "(1000 times)" in err
    assert err.count("a pairkit note") == 1 and "UserWarning" in err


@pytest.mark.timeout(30)
def test_warnings_before_an_error_are_shown_and_the_error_exits_2(capsys):
    import typer

    with pytest.raises(typer.Exit) as exit_info:
        with reported_errors():
            warnings.warn("before the failure", UserWarning, stacklevel=1)
            raise InputError("bad value")
    assert exit_info.value.exit_code == 2
    err = capsys.readouterr().err
    assert "before the failure" in err and "bad value" in err


@pytest.mark.timeout(60)
def test_rao_kupper_on_one_tie_and_huge_weights_finish(tmp_path):
    one_tie = tmp_path / "tie.csv"
    one_tie.write_text("a,b,outcome\nx,y,0.5\n")
    result = runner.invoke(app, ["rank", str(one_tie), "--model", "rao_kupper", "--prior", "1"])
    assert result.exit_code in (0, 2), result.output
    assert "Traceback" not in result.output
    heavy = tmp_path / "heavy.csv"
    heavy.write_text("winner,loser,w\nx,y,1e308\ny,z,1e308\nz,x,1\n")
    result = runner.invoke(app, ["rank", str(heavy), "--winner", "winner", "--loser", "loser", "--weight", "w"])
    assert result.exit_code in (0, 2), result.output
    assert "nan" not in result.output.lower().split("error")[0]


@pytest.mark.timeout(60)
def test_active_stops_when_every_judgment_is_a_tie():
    """Equal items never separate: the default limit must end the run (it made 920 paid calls in 60 s)."""
    from pairkit.judges.base import CallableJudge
    from pairkit.select import Pool, select
    from pairkit.select.strategies import default_active_limit

    names = [f"m{i}" for i in range(8)]
    sel = select("active", CallableJudge(lambda c, x, y: 0.5), Pool.single(names), seed=0)
    assert sel.stopped == "limit"
    assert sel.calls <= default_active_limit(len(names)) + len(names) // 2


@pytest.mark.timeout(120)
def test_simulate_with_defaults_finishes():
    result = runner.invoke(app, ["simulate"])
    assert result.exit_code == 0, result.output
    assert "stopped" in result.output


@pytest.mark.parametrize(
    "args, option",
    [
        (["--k", "0"], "k must be"),
        (["--k", "-1"], "k must be"),
        (["--spread", "nan"], "spread must be"),
        (["--spread", "-1"], "spread must be"),
        (["--position-bias", "inf"], "--position-bias must be"),
        (["--items", "1"], "--items must be"),
        (["--budget", "0"], "budget must be"),
    ],
)
@pytest.mark.timeout(30)
def test_simulate_rejects_out_of_range_options_at_once(args, option):
    result = runner.invoke(app, ["simulate", *args])
    assert result.exit_code == 2, result.output
    assert option in result.output


@pytest.mark.parametrize("options", [{"n_comparisons": 0}, {"batch": 0}, {"prior": 0.0}, {"level": 1.5}])
def test_active_rejects_bad_options(options):
    from pairkit.judges.base import CallableJudge
    from pairkit.select import Pool, select

    with pytest.raises(InputError, match=next(iter(options))):
        select("active", CallableJudge(lambda c, x, y: 1.0), Pool.single(["a", "b", "c"]), **options)

"""``pairkit arena``: annotator links, export and one-line errors (the server itself: tests/arena)."""

import json
import re

from typer.testing import CliRunner

from pairkit.arena import VoteStore
from pairkit.cli import app

runner = CliRunner()


def test_annotators_add_prints_private_links_and_list_counts(tmp_path):
    db = tmp_path / "a.sqlite"
    res = runner.invoke(app, ["arena", "annotators", "add", "alice", "bob", "--db", str(db), "--url",
                              "http://example.test:9000/"])
    assert res.exit_code == 0, res.output
    links = re.findall(r"^(\w+)\s+(http://example\.test:9000/a/(\S+))$", res.output, re.M)
    assert [name for name, _, _ in links] == ["alice", "bob"]
    store = VoteStore(db)
    assert store.annotator_by_token(links[0][2]).name == "alice"
    again = runner.invoke(app, ["arena", "annotators", "add", "alice", "--db", str(db)])
    assert again.exit_code == 2 and "already exists" in again.output
    listed = runner.invoke(app, ["arena", "annotators", "list", "--db", str(db)])
    assert listed.exit_code == 0 and re.search(r"alice\s+0 votes", listed.output)


def test_errors_exit_2_with_one_line(tmp_path):
    cases = [
        (["arena", "export", "--db", str(tmp_path / "none.sqlite"), "--pairs", "p.jsonl"], "not found"),
        (["arena", "serve", str(tmp_path / "none.jsonl"), "--db", str(tmp_path / "x.sqlite")], "none.jsonl"),
        (["arena", "serve", "--db", str(tmp_path / "y.sqlite")], "give a CANDIDATES.jsonl"),
        (["arena", "serve", "--demo", "--db", str(tmp_path / "z.sqlite"), "--strategy", "bogus"], "--strategy"),
        (["arena", "serve", "--demo", "--db", str(tmp_path / "z.sqlite"), "--gold-rate", "1.5"], "--gold-rate"),
        (["arena", "serve", "--demo", "--db", str(tmp_path / "z.sqlite"), "--port", "0"], "--port"),
    ]
    for args, expected in cases:
        res = runner.invoke(app, args)
        assert res.exit_code == 2, (args, res.output)
        assert expected in res.output and "Traceback" not in res.output
    assert not (tmp_path / "x.sqlite").exists() and not (tmp_path / "y.sqlite").exists()


def test_serving_other_candidates_on_the_same_db_is_refused(tmp_path):
    from pairkit.arena import demo_candidates_path

    db = tmp_path / "a.sqlite"
    rows = [json.loads(line) for line in demo_candidates_path().read_text(encoding="utf-8").splitlines()]
    VoteStore(db).set_candidates(rows)
    rows[0]["text"] = "changed"
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    res = runner.invoke(app, ["arena", "serve", str(other), "--db", str(db)])
    assert res.exit_code == 2 and "other candidates" in res.output


def test_export_needs_an_output(tmp_path):
    db = tmp_path / "a.sqlite"
    VoteStore(db).close()
    res = runner.invoke(app, ["arena", "export", "--db", str(db)])
    assert res.exit_code == 2 and "nothing to export" in res.output
    bad = runner.invoke(app, ["arena", "export", "--db", str(db), "--comparisons", str(tmp_path / "x.xlsx")])
    assert bad.exit_code == 2 and "unknown file type" in bad.output

"""Bulk edits without Ray: manifests, bad rows recorded per row, resume, the Python API and CLI."""

import json

import pytest

from editrt import batch
from editrt.batch.job import read_records
from editrt.errors import InputError


@pytest.fixture(scope="module")
def editor(tmp_path_factory):
    """One RowEditor for the module, with the tiny generator's statistics and fs3 precomputed."""
    return batch.RowEditor(tiny_style_options(tmp_path_factory.mktemp("style")))


def tiny_style_options(folder):
    from editrt.methods.stylespace import compute_channel_stats, compute_relevance
    from editrt.models.clip import load_clip
    from editrt.models.stylegan2 import StyleGAN2

    G, clip = StyleGAN2.load("tiny", random_init=True), load_clip("tiny", random_init=True)
    stats = compute_channel_stats(G, n=512)
    stats.save(folder / "stats.safetensors")
    fs3 = compute_relevance(G, clip, stats, n_images=1, batch_size=256, progress=False)
    import numpy as np

    np.save(folder / "fs3.npy", fs3.numpy())
    return batch.BatchOptions(random_init=True, fs3=str(folder / "fs3.npy"), stats=str(folder / "stats.safetensors"))


def _style_rows(n, method="global"):
    return [{"id": f"s{i}", "method": method, "source": "face", "target": "smiling face", "strength": 2.0,
             "seed": i} for i in range(n)]


def test_csv_and_jsonl_manifests(tmp_path):
    (tmp_path / "m.csv").write_text(
        "id,image,method,source,target,strength,seed,settings\n"
        'a,in.png,FlexIT,cat,dog,,3,"{""steps"": 2}"\n'
        ",,global,face,smile,1.5,4,\n"
        "c,,global,face,smile,abc,0,\n"
        "d,,global,face,smile,1,0,{bad json\n")
    rows = batch.read_manifest(tmp_path / "m.csv")
    assert [r.id for r in rows] == ["a", "000001", "c", "d"]
    assert rows[0].method == "flexit" and rows[0].seed == 3 and rows[0].settings == {"steps": 2}
    assert rows[0].image == str(tmp_path / "in.png")  # relative to the manifest's folder
    assert rows[1].strength == 1.5 and rows[1].problem is None
    assert "strength 'abc' is not a number" in rows[2].problem and rows[3].problem
    (tmp_path / "m.jsonl").write_text(json.dumps({"target": "dog", "settings": {"steps": 1}}) + "\n\nnot json\n[1]\n")
    rows = batch.read_manifest(tmp_path / "m.jsonl")
    assert rows[0].settings == {"steps": 1} and "not valid JSON" in rows[1].problem
    assert "not a JSON object" in rows[2].problem
    with pytest.raises(InputError, match="same id"):
        batch.rows_from([{"id": "x", "target": "a"}, {"id": "x", "target": "b"}])
    with pytest.raises(InputError, match="header"):
        (tmp_path / "h.csv").write_text("image,source\na.png,cat\n")
        batch.read_manifest(tmp_path / "h.csv")
    with pytest.raises(InputError, match=".csv or .jsonl"):
        (tmp_path / "m.txt").write_text("x")
        batch.read_manifest(tmp_path / "m.txt")
    bad = batch.rows_from([{"id": "../x", "target": "a"}, {"target": "b", "colour": "red"}])
    assert "file name" in bad[0].problem and bad[0].id == "000000" and "unknown column" in bad[1].problem


def test_row_checks():
    rows = batch.rows_from([
        {"method": "flexit", "source": "cat", "target": "dog"},
        {"method": "flexit", "image": "a.png", "target": "dog"},
        {"method": "flexit", "image": "a.png", "source": "cat", "target": "dog", "strength": 1},
        {"method": "feu", "source": "face", "target": "smile"},
        {"method": "stylize", "target": "smile"},
        {"method": "global", "target": "  "}])
    for row, msg in zip(rows, ["needs an image", "source text", "strength applies", "no source",
                               "unknown method", "target text is empty"]):
        with pytest.raises(InputError, match=msg):
            batch.check_row(row)


def test_run_records_bad_rows_and_resumes(tmp_path, sample_png, editor):
    (tmp_path / "broken.png").write_bytes(b"not an image")
    rows = _style_rows(2) + [
        {"id": "flex", "image": str(sample_png), "source": "cat", "target": "dog", "seed": 1, "settings": {"steps": 1}},
        {"id": "broken", "image": str(tmp_path / "broken.png"), "source": "cat", "target": "dog"},
        {"id": "empty", "image": str(sample_png), "source": "cat", "target": ""},
        {"id": "badopt", "method": "global", "target": "smile", "settings": {"no_such_option": 1}}]
    out = tmp_path / "out"
    rep = batch.run(rows, out, editor=editor)
    assert (rep.rows, rep.edited, rep.failed, rep.skipped) == (6, 3, 3, 0)
    status = {r["id"]: r for r in rep.records}
    assert status["flex"]["status"] == "ok" and status["flex"]["steps"] == 1
    assert "not an image" in status["broken"]["error"] and "empty" in status["empty"]["error"]
    assert "no_such_option" in status["badopt"]["error"]
    assert sorted(p.name for p in out.glob("*.png")) == ["flex.png", "s0.png", "s1.png"]
    first = {n: (out / n).read_bytes() for n in ("s0.png", "s1.png", "flex.png")}
    # re-run: done rows are skipped, failed ones retried; a changed row is redone
    rows[1] = {**rows[1], "strength": -2.0}
    rep2 = batch.run(rows, out, editor=editor)
    assert (rep2.edited, rep2.failed, rep2.skipped) == (1, 3, 2)
    assert (out / "s0.png").read_bytes() == first["s0.png"] and (out / "s1.png").read_bytes() != first["s1.png"]
    latest = read_records(out / batch.RESULTS_FILE)
    assert set(latest) == {r["id"] for r in rows}
    # a torn last line (interrupted run) is ignored; a missing output is redone
    path = out / batch.RESULTS_FILE
    path.write_bytes(path.read_bytes() + b'{"id": "s0", "sta')
    (out / "flex.png").unlink()
    rep3 = batch.run(rows[:3], out, editor=editor)
    assert (rep3.edited, rep3.skipped) == (1, 2) and (out / "flex.png").read_bytes() == first["flex.png"]


def test_output_never_overwrites_an_input(tmp_path, sample_png, editor):
    own = tmp_path / "x.png"
    own.write_bytes(sample_png.read_bytes())
    rep = batch.run([{"id": "x", "image": str(own), "source": "cat", "target": "dog"}], tmp_path, editor=editor)
    assert rep.failed == 1 and "never overwrites" in rep.records[0]["error"]
    assert own.read_bytes() == sample_png.read_bytes()


def test_cli_batch(tmp_path, capsys, sample_png):
    from editrt.cli import main

    m = tmp_path / "m.jsonl"
    m.write_text("\n".join(json.dumps(r) for r in [
        {"id": "f", "image": str(sample_png), "source": "cat", "target": "dog", "settings": {"steps": 1}},
        {"id": "bad", "target": ""}]))
    code = main(["batch", str(m), "-o", str(tmp_path / "out"), "--random-weights", "--no-progress"])
    text = capsys.readouterr().out
    assert code == 2 and "1 edited, 1 failed" in text and "bad: InputError" in text
    assert (tmp_path / "out" / "f.png").is_file()
    assert main(["batch", str(tmp_path / "none.csv"), "-o", str(tmp_path / "o2")]) == 2


@pytest.fixture
def sample_png():
    from importlib.resources import files

    return files("editrt") / "data" / "sample.png"

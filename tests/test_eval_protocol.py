"""The protocol's run loop: results, resumability, summary, grid; the ImageNet world's file logic."""

import json

import pytest
import torch
from torch import nn

from editrt.errors import InputError
from editrt.eval import protocol
from editrt.eval.queries import Query
from editrt.eval.runners import CopyRunner, FunctionRunner, RetrieveRunner
from editrt.eval.worlds import ImageNetWorld, World


class Pool(nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))


def _img(seed, size=16):
    return torch.rand(3, size, size, generator=torch.Generator().manual_seed(seed))


class FakeWorld(World):
    """6 queries over 3 classes; an image's class is its dominant channel."""

    name = "fake"
    feature_size = classifier_size = 16

    def __init__(self):
        from editrt.models.lpips import load_lpips

        super().__init__(classifier=nn.Sequential(Pool(), nn.Linear(3, 3)), features=Pool(),
                         lpips=load_lpips("alex", random_init=True, seed=0))
        with torch.no_grad():
            self.classifier[1].weight.copy_(torch.eye(3))
            self.classifier[1].bias.zero_()

    def queries(self, split, limit=None):
        qs = [Query(i, f"c{i % 3}", i % 3, f"c{(i + 1) % 3}", (i + 1) % 3, True) for i in range(6)]
        return qs[:limit] if limit else qs

    def class_ids(self):
        return [0, 1, 2]

    def input_image(self, q):
        return _img(q.query_id)

    def retrieve_image(self, q, seed=0):
        x = torch.full((3, 16, 16), 0.1)
        x[q.target_id] = 0.9
        return x

    def reference_images(self, class_id, n):
        x = torch.full((n, 3, 16, 16), 0.1)
        x[:, class_id] = 0.9
        yield x + 0.01 * torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(class_id))


class Counting(FunctionRunner):
    def __init__(self, name="ident", settings=None):
        self.calls = 0

        def fn(images, sources, targets):
            self.calls += images.shape[0]
            return images

        super().__init__(name, fn, settings=settings, batch_size=2)


def test_run_summary_and_grid(tmp_path):
    world = FakeWorld()
    rep = protocol.evaluate(world, [CopyRunner(), RetrieveRunner()], tmp_path, progress=False, stats_per_class=4)
    rows = {r["method"]: r for r in rep.summary["rows"]}
    assert rows["COPY"]["lpips"] == pytest.approx(0.0, abs=1e-6)
    assert rows["RETRIEVE"]["accuracy"] == 100.0 and rows["RETRIEVE"]["csfid"] < rows["COPY"]["csfid"]
    assert rows["COPY"]["n"] == 6
    saved = json.loads((tmp_path / protocol.SUMMARY_FILE).read_text())
    assert saved["rows"][0]["method"] == "COPY" and {"accuracy", "lpips", "sfid", "csfid"} <= set(saved["rows"][0])
    assert (tmp_path / protocol.GRID_FILE).is_file() and (tmp_path / protocol.STATS_FILE).is_file()
    assert len(list((tmp_path / "images" / "COPY").glob("*.png"))) == 6
    assert "COPY" in protocol.format_table(rep.summary)


def test_resume_skips_done_queries_and_redoes_torn_lines(tmp_path):
    world = FakeWorld()
    r1 = Counting()
    protocol.evaluate(world, [r1], tmp_path, limit=4, progress=False, stats_per_class=2)
    assert r1.calls == 4
    r2 = Counting()
    rep = protocol.evaluate(world, [r2], tmp_path, progress=False, stats_per_class=2)
    assert r2.calls == 2 and rep.skipped == 4 and rep.new_results == 2  # only the 2 new queries
    # an interrupted write leaves a torn last line: it is ignored and that query is redone
    path = tmp_path / protocol.RESULTS_FILE
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
    r3 = Counting()
    rep = protocol.evaluate(world, [r3], tmp_path, progress=False, stats_per_class=2)
    assert r3.calls == 1 and rep.summary["rows"][0]["n"] == 6
    assert len(protocol.read_results(path)) == 6
    # other settings -> other fingerprint -> nothing reused
    r4 = Counting(settings={"strength": 2})
    protocol.evaluate(world, [r4], tmp_path, progress=False, stats_per_class=2)
    assert r4.calls == 6


def test_duplicate_runner_names_rejected(tmp_path):
    with pytest.raises(InputError):
        protocol.evaluate(FakeWorld(), [CopyRunner(), CopyRunner()], tmp_path, progress=False)


def _png(path, seed):
    from editrt import imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.save_image(_img(seed, 32), path)


def test_imagenet_world_files(tmp_path):
    from editrt.eval.queries import load_queries

    q = load_queries("test", limit=1)[0]
    root = tmp_path / "imagenet"
    _png(root / "val" / q.path, 0)
    world = ImageNetWorld(root, classifier=nn.Identity(), features=Pool(), lpips=None)
    assert world.val_root == root / "val" and world.train_root == root / "train"
    assert world.input_image(q).shape == (3, 32, 32)
    target_dir = root / "val" / world.wnid[q.target_id]
    with pytest.raises(InputError, match="RETRIEVE"):
        world.retrieve_image(q)
    _png(target_dir / "ILSVRC2012_val_00000001.JPEG.png", 1)
    assert world.retrieve_image(q).shape == (3, 32, 32)
    with pytest.raises(InputError, match="training images"):
        next(world.reference_images(q.target_id, 4))
    _png(root / "train" / world.wnid[q.target_id] / "a.png", 2)
    batch = next(world.reference_images(q.target_id, 4))
    assert batch.shape == (1, 3, 256, 256)
    missing = load_queries("test", limit=2)[1]
    with pytest.raises(InputError, match="not found"):
        world.input_image(missing)
    assert len(world.class_ids()) == 273

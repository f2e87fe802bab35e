"""Checkpoint folder rules without a model: pointers, retention, resume clean-up, choosing what to evaluate,
RNG states, manifests (the DCP save/load itself runs in the training tests); and, on the tiny run, the
manifests a real save writes and a resume past a damaged latest checkpoint."""

from __future__ import annotations

import json
import random
import shutil

import numpy as np
import pytest
import torch

from dare_rec import checkpoint as ckpt
from dare_rec.config import ConfigError
from dare_rec.manifest import MANIFEST, CheckpointError, manifest_text, read_manifest, verify_checkpoint
from tests.conftest import tiny_run_args


def fake_checkpoint(root, step, complete=True):
    path = root / ckpt.checkpoint_name(step)
    path.mkdir(parents=True)
    for name in (".metadata", ckpt.CONFIG_FILE) + ((ckpt.STATE_FILE,) if complete else ()):
        (path / name).write_text("{}")
    return path


def names(root):
    return [p.name for _, p in ckpt.list_checkpoints(root)]


def test_pointers_are_replaced_whole(tmp_path):
    fake_checkpoint(tmp_path, 3)
    ckpt.set_pointer(tmp_path, ckpt.LATEST, "step-00000003")
    assert ckpt.read_pointer(tmp_path, ckpt.LATEST) == tmp_path / "step-00000003"
    assert ckpt.read_pointer(tmp_path, ckpt.BEST) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step-00000003"]  # no temporary file left


def test_retention_keeps_the_newest_and_the_best(tmp_path):
    for step in (2, 4, 6, 8, 10):
        fake_checkpoint(tmp_path, step)
    (tmp_path / ".tmp-step-00000012").mkdir()
    ckpt._prune(tmp_path, keep=2, protect={"step-00000004"})
    assert names(tmp_path) == ["step-00000004", "step-00000008", "step-00000010"]
    assert not (tmp_path / ".tmp-step-00000012").exists()


def test_resume_clean_up_makes_latest_the_newest(tmp_path):
    for step in (5, 10, 15):
        fake_checkpoint(tmp_path, step)
    (tmp_path / ".tmp-step-00000020").mkdir()
    ckpt.set_pointer(tmp_path, ckpt.LATEST, "step-00000010")
    ckpt.set_pointer(tmp_path, ckpt.BEST, "step-00000015")  # written by the killed attempt after `latest`
    ckpt.prepare_resume(tmp_path, {"step": 10, "best": {"checkpoint": "step-00000005"}})
    assert names(tmp_path) == ["step-00000005", "step-00000010"]
    assert ckpt.read_pointer(tmp_path, ckpt.BEST).name == "step-00000005"
    ckpt.prepare_resume(tmp_path, {"step": 10, "best": None})
    assert ckpt.read_pointer(tmp_path, ckpt.BEST) is None


def test_evaluation_picks_best_then_latest_and_says_which(tmp_path):
    run, root = tmp_path / "run", tmp_path / "run" / "checkpoints"
    fake_checkpoint(root, 10)
    fake_checkpoint(root, 20)
    ckpt.set_pointer(root, ckpt.LATEST, "step-00000020")
    assert ckpt.pick_checkpoint(run) == (root / "step-00000020", "latest")  # no validation yet: no best
    ckpt.set_pointer(root, ckpt.BEST, "step-00000010")
    assert ckpt.pick_checkpoint(run) == (root / "step-00000010", "best")
    assert ckpt.pick_checkpoint(root, "latest") == (root / "step-00000020", "latest")
    assert ckpt.pick_checkpoint(root / "step-00000020", "best") == (root / "step-00000020", "given")
    with pytest.raises(ConfigError, match="--pick: must be one of"):
        ckpt.pick_checkpoint(run, "first")
    fake_checkpoint(root, 30, complete=False)
    ckpt.set_pointer(root, ckpt.LATEST, "step-00000030")
    with pytest.raises(ConfigError, match="names step-00000030, which is missing or incomplete"):
        ckpt.pick_checkpoint(run, "latest")
    with pytest.raises(ConfigError, match="is not a checkpoint"):
        ckpt.pick_checkpoint(tmp_path / "elsewhere")


def test_rng_states_round_trip_through_json():
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    saved = ckpt.rng_states()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    ckpt.set_rng_states(json.loads(json.dumps(saved)))
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1]) and got[2] == expected[2]


def test_a_manifest_names_the_damaged_file(tmp_path):
    (tmp_path / "__0_0.distcp").write_bytes(b"shard" * 1000)
    (tmp_path / ".metadata").write_bytes(b"metadata")
    (tmp_path / MANIFEST).write_text(manifest_text(tmp_path))
    verify_checkpoint(tmp_path)
    assert sorted(read_manifest(tmp_path)) == [".metadata", "__0_0.distcp"]
    (tmp_path / "eval-test.json").write_text("{}")  # written later by evaluate: not listed, not checked
    verify_checkpoint(tmp_path)
    (tmp_path / "__0_0.distcp").write_bytes(b"SHARD" * 1000)
    with pytest.raises(CheckpointError, match=rf"^{tmp_path / '__0_0.distcp'}: sha256 .* differs from manifest"):
        verify_checkpoint(tmp_path)
    verify_checkpoint(tmp_path, [".metadata"])  # only the files asked for
    (tmp_path / "__0_0.distcp").write_bytes(b"shard")
    with pytest.raises(CheckpointError, match=r"5 bytes, manifest.json records 5,000; the file was truncated"):
        verify_checkpoint(tmp_path)
    (tmp_path / "__0_0.distcp").unlink()
    with pytest.raises(CheckpointError, match="__0_0.distcp: missing"):
        verify_checkpoint(tmp_path)
    (tmp_path / MANIFEST).write_text("[]")
    with pytest.raises(CheckpointError, match="not a valid checkpoint manifest"):
        verify_checkpoint(tmp_path)
    (tmp_path / MANIFEST).unlink()
    with pytest.raises(CheckpointError, match=f"^{tmp_path / MANIFEST}: missing"):
        verify_checkpoint(tmp_path)


def test_every_saved_checkpoint_lists_all_its_files(tiny_run):
    checkpoints = [p for _, p in ckpt.list_checkpoints(tiny_run / "checkpoints")]
    assert [p.name for p in checkpoints] == ["step-00000001", "step-00000002"]
    for path in checkpoints:
        verify_checkpoint(path)
        files = {p.name for p in path.iterdir() if p.name != MANIFEST and not p.name.startswith("eval-")}
        assert set(read_manifest(path)) == files >= {".metadata", "__0_0.distcp", "config.yaml",
                                                     "train_state.json", "rank-00000.json"}


def test_resume_skips_a_damaged_latest_checkpoint_for_the_previous_one(tiny_data, tiny_run, tmp_path, capsys):
    from dare_rec.pipelines import train

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    root = run / "checkpoints"
    shard = root / "step-00000002" / "__0_0.distcp"
    shard.write_bytes(bytes(shard.stat().st_size))
    assert train.main(tiny_run_args(tiny_data, run)) == 0
    assert f"warning: {shard}: sha256" in capsys.readouterr().err
    resumes = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
               if json.loads(line)["event"] == "resume"]
    assert [(e["step"], e["checkpoint"]) for e in resumes] == [(1, "step-00000001")]
    assert (root / "damaged-step-00000002").is_dir()  # kept for inspection, never pruned
    assert ckpt.read_pointer(root, ckpt.LATEST).name == "step-00000002"
    verify_checkpoint(root / "step-00000002")  # written again by the resumed run

    # ... and it finishes exactly where the run that was never damaged did: same final validation metrics
    def final_val(folder):
        return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()
                if json.loads(line)["event"] == "val"][-1]

    resumed, untouched = final_val(run), final_val(tiny_run)
    assert resumed["step"] == untouched["step"] == 2
    for metric in ("auc", "gauc_user", "logloss"):
        assert resumed[metric] == untouched[metric], metric

"""End to end: torchx launch, train main(argv) under elastic launch, evaluation on 1 and 2 processes, failures.

Every multi-process run passes ``--train.dist_timeout_s`` (the process-group timeout), so a hang fails
within that time instead of blocking CI.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch
import torch.distributed.checkpoint as dcp
import torch.nn.functional as F
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from dare_rec.checkpoint import resolve_checkpoint
from dare_rec.pipelines import evaluate, train
from tests.conftest import REPO, TINY_PRESET
from tests.multiprocess import run_on_ranks

TIMEOUT = ["--train.dist_timeout_s", "60"]


def launch(entrypoint, argv, nproc=2):
    """Runs ``entrypoint(argv)`` on ``nproc`` local processes with torch's elastic launcher."""
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=uuid.uuid4().hex,
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0,
                          rdzv_configs={"join_timeout": 60}, start_method="spawn")
    return elastic_launch(config, entrypoint)(argv)


def train_args(data, out, *extra):
    return ["--config", str(TINY_PRESET), "--data.path", str(data), "--train.output_dir", str(out), *TIMEOUT,
            *extra]


def events(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def torchx_train(tiny_data, out, *component_args):
    """Trains through the real launcher: torchx local_cwd with the repo's component; returns the output dir."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    cmd = [str(bin_dir / "torchx"), "run", "-s", "local_cwd", "-cfg", f"log_dir={out / 'logs'}",
           "launch/components.py:train", *component_args, "--config", "configs/tiny.yaml", "--",
           "--data.path", str(tiny_data), "--train.output_dir", str(out), *TIMEOUT]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "SUCCEEDED" in proc.stdout + proc.stderr
    assert list((out / "logs").rglob("stdout.log")), "torchx did not keep the job logs"
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def torchx_run(tiny_data, tmp_path_factory):
    """A run trained with ``torchx run ... -j 1x2`` (one machine, two processes)."""
    return torchx_train(tiny_data, tmp_path_factory.mktemp("torchx_run"), "-j", "1x2")


def test_torchx_two_simulated_nodes(tiny_data, tmp_path):
    out = torchx_train(tiny_data, tmp_path, "-j", "2x1", "--rdzv_port", str(free_port()))
    log = events(out)
    assert log[0]["world_size"] == 2 and log[-1]["event"] == "end"


def test_torchx_job_trains_on_two_ranks_and_checkpoints(torchx_run):
    log = events(torchx_run)
    assert log[0]["event"] == "start" and log[0]["world_size"] == 2
    assert log[-1]["event"] == "end" and log[-1]["samples_per_s"] > 0
    ckpt = resolve_checkpoint(torchx_run)
    assert {".metadata", "config.yaml", "train_state.json"} <= {p.name for p in ckpt.iterdir()}
    assert len(list(ckpt.glob("*.distcp"))) == 2  # one shard file per rank


def test_train_main_under_elastic_launch(tiny_data, tmp_path):
    out = tmp_path / "run"
    # with the precision switches on: bf16 autocast for the dense part, FP16 storage for one table
    results = launch(train.main, train_args(tiny_data, out, "--train.max_steps", "8", "--train.val_every", "3",
                                            "--train.log_every", "2", "--train.bf16", "true",
                                            "--sharding.tables.item_att.data_type", "fp16"))
    assert results == {0: 0, 1: 0}
    log = events(out)
    kinds = [e["event"] for e in log]
    assert kinds[0] == "start" and kinds[-1] == "end"
    assert [e["step"] for e in log if e["event"] == "val"] == [3, 6, 8]
    assert [e["step"] for e in log if e["event"] == "train"] == [2, 3, 4, 6, 8]
    val = [e for e in log if e["event"] == "val"][-1]
    assert {"auc", "gauc_user", "gauc_category", "logloss", "oracle_auc"} <= set(val)
    ckpt = resolve_checkpoint(out, "latest")
    assert ckpt.name == "step-00000008"
    stored = dcp.FileSystemReader(str(ckpt)).read_metadata().state_dict_metadata
    dtypes = {key.rsplit(".", 2)[-2]: meta.properties.dtype for key, meta in stored.items()
              if key.startswith("model.") and (".embeddings." in key or ".embedding_bags." in key)}
    assert dtypes == {"item_att": torch.float16, "cate_att": torch.float32, "item_rep": torch.float32,
                      "cate_rep": torch.float32}


def test_evaluation_on_one_and_two_processes_agrees(torchx_run, tmp_path):
    one = evaluate.evaluate(str(torchx_run), output=str(tmp_path / "one.json"), progress=False)
    assert launch(evaluate.main, ["--checkpoint", str(torchx_run), "--output", str(tmp_path / "two.json")]) \
        == {0: 0, 1: 0}
    two = json.loads((tmp_path / "two.json").read_text())
    assert one["world_size"] == 1 and two["world_size"] == 2
    for key in ("auc", "gauc_user", "gauc_category", "logloss", "oracle_auc", "samples"):
        assert two[key] == pytest.approx(one[key], rel=1e-9, abs=1e-12), key
    assert "| AUC |" in (tmp_path / "two.md").read_text()


def test_validation_does_not_change_training(tiny_data, tmp_path):
    def losses(run, *extra):
        train.main(train_args(tiny_data, tmp_path / run, "--train.max_steps", "10", "--train.log_every", "1",
                              *extra))
        return [e["loss"] for e in events(tmp_path / run) if e["event"] == "train"]

    assert losses("no_val") == losses("val_every_3", "--train.val_every", "3")


def test_both_table_lookups_train_the_same_under_the_pipeline(tiny_data, tmp_path):
    """sharding.lookup only changes the kernels: the pipelined job's losses agree step by step."""
    def losses(lookup):
        train.main(train_args(tiny_data, tmp_path / lookup, "--train.max_steps", "6", "--train.log_every", "1",
                              "--sharding.lookup", lookup, "--model.variant", "twin_hard"))
        return [e["loss"] for e in events(tmp_path / lookup) if e["event"] == "train"]

    assert losses("sequence") == pytest.approx(losses("singleton_bags"), rel=1e-4)


@pytest.mark.parametrize("lookup", ["sequence", "singleton_bags"])
@pytest.mark.parametrize("variant", ["dare", "twin", "twin_no_tr", "twin_4e", "twin_proj", "twin_hard", "din"])
def test_every_variant_trains_and_evaluates_through_the_jobs(tiny_data, tmp_path, variant, lookup):
    """The real training job (TorchRec's train pipeline fx-traces the model) and evaluation, per variant and
    table lookup: a few steps, a validation, a checkpoint, then the test split scored in full."""
    run = tmp_path / "run"
    assert train.main(train_args(tiny_data, run, "--model.variant", variant, "--sharding.lookup", lookup,
                                 "--train.max_steps", "6", "--train.log_every", "2")) == 0
    end = events(run)[-1]
    assert end["event"] == "end" and end["steps"] == 6 and end["best"]["step"] == 6
    assert evaluate.main(["--checkpoint", str(run), "--split", "test", "--output", str(tmp_path / "e.json")]) == 0
    metrics = json.loads((tmp_path / "e.json").read_text())
    assert metrics["samples"] == json.loads((Path(tiny_data) / "meta.json").read_text())["counts"]["test"]
    assert metrics["step"] == 6


@pytest.mark.parametrize("lookup", ["sequence", "singleton_bags"])
def test_fbgemm_bounds_check_trains_and_evaluates_through_the_jobs(tiny_data, tmp_path, lookup):
    """sharding.bounds_check true (FBGEMM checks every looked-up id, FATAL): the reader's ids all pass."""
    trains_and_evaluates(tiny_data, tmp_path, "--sharding.bounds_check", "true", "--sharding.lookup", lookup)


def trains_and_evaluates(data: str, tmp_path: Path, *overrides: str, steps: int = 12) -> None:
    """``steps`` training steps with ``overrides`` lower the loss, and the checkpoint evaluates every test
    sample."""
    run = tmp_path / "run"
    assert train.main(train_args(data, run, *overrides, "--train.max_steps", str(steps), "--train.log_every",
                                 "1")) == 0
    losses = [e["loss"] for e in events(run) if e["event"] == "train"]
    assert len(losses) == steps and sum(losses[-3:]) < sum(losses[:3])
    assert evaluate.main(["--checkpoint", str(run), "--split", "test", "--output", str(tmp_path / "e.json")]) == 0
    metrics = json.loads((tmp_path / "e.json").read_text())
    assert metrics["samples"] == json.loads((Path(data) / "meta.json").read_text())["counts"]["test"]


@pytest.mark.parametrize("variant,lookup", [("dare", "sequence"), ("twin_4e", "singleton_bags"),
                                            ("twin_proj", "singleton_bags")])
def test_side_fields_train_and_evaluate_through_the_jobs(tiny_side_data, tmp_path, variant, lookup):
    """Behavior type and time gap on a dataset carrying hist_btype: the reader's side keys pass TorchRec's
    pipeline and the sharded lookups, the loss falls, and evaluation reads the side tables back."""
    trains_and_evaluates(tiny_side_data, tmp_path, "--model.variant", variant, "--sharding.lookup", lookup,
                         "--model.side_fields", "[btype]", "--model.time_gap", "true")


@pytest.mark.parametrize("variant,lookup,extra", [
    ("dare", "sequence", ["--model.side_fields", "[brand]"]),
    ("twin_4e", "singleton_bags", ["--model.side_fields", "[btype, seller, brand]", "--model.aux_behaviors", "8"]),
    ("twin_hard", "singleton_bags", ["--model.side_fields", "[brand]", "--model.hard_levels", "[cate, brand]",
                                     "--model.esu_layers", "2"]),
    ("dare", "singleton_bags", ["--model.side_fields", "[seller, brand]", "--model.temporal_merge", "add",
                                "--model.time_gap", "true"]),
    ("twin", "sequence", ["--model.side_fields", "[btype, brand]", "--model.attention_heads",
                          "[[item, cate], [brand, btype]]", "--model.aux_behaviors", "8"]),
])
def test_seller_and_brand_train_and_evaluate_through_the_jobs(tiny_side_data, tmp_path, variant, lookup, extra):
    """Side fields seller and brand on a dataset carrying the Tmall columns: their sharded tables are planned
    and looked up through TorchRec's pipeline (sized from meta.json num_sellers / num_brands), the loss falls,
    and evaluation rebuilds them from the checkpoint's config; with hard level brand too, one brand key serves
    both; under temporal_merge add the dense tables span their blocks; a DI-TIN head may score brand's block."""
    trains_and_evaluates(tiny_side_data, tmp_path, "--model.variant", variant, "--sharding.lookup", lookup, *extra)


@pytest.mark.parametrize("fill,lookup", [("soft", "sequence"), ("recent", "singleton_bags")])
def test_hierarchical_hard_search_trains_and_evaluates_through_the_jobs(tiny_side_data, tmp_path, fill, lookup):
    """twin_hard over category, brand and seller on a dataset carrying the Tmall brand and seller columns: the
    reader's brand and seller keys (history and target) pass TorchRec's pipeline, the loss falls, and evaluation
    reads them again from the checkpoint's config."""
    trains_and_evaluates(tiny_side_data, tmp_path, "--model.variant", "twin_hard", "--sharding.lookup", lookup,
                         "--model.hard_levels", "[cate, brand, seller]", "--model.hard_fill", fill)


def test_stacked_tin_trains_and_evaluates_through_the_jobs(tiny_side_data, tmp_path):
    """model.esu_layers 2 with the side fields and the bounded aux head: the train pipeline traces both layers
    (the selected-only representation lookup feeds both), the loss falls, and evaluation rebuilds the wider
    over-arch from the checkpoint's config."""
    trains_and_evaluates(tiny_side_data, tmp_path, "--model.esu_layers", "2", "--sharding.lookup", "sequence",
                         "--model.side_fields", "[btype]", "--model.time_gap", "true", "--model.aux_behaviors", "8")


@pytest.mark.parametrize("variant,lookup", [("dare", "sequence"), ("twin_hard", "singleton_bags")])
def test_temporal_add_trains_and_evaluates_through_the_jobs(tiny_side_data, tmp_path, variant, lookup):
    """model.temporal_merge add with the time gap (a dataset with timestamps): the train pipeline traces the keys'
    one add (the gap rows), the loss falls, and evaluation rebuilds the side tables at the semantic width from the
    checkpoint's config. 24 steps: twin_hard's loss under add stays flat for the first 12 on this tiny set (seed
    0; it falls by step 24, and by step 12 on seeds 1-3)."""
    trains_and_evaluates(tiny_side_data, tmp_path, "--model.variant", variant, "--sharding.lookup", lookup,
                         "--model.temporal_merge", "add", "--model.time_gap", "true", "--model.aux_behaviors", "8",
                         steps=24)


@pytest.mark.parametrize("aux", ["8", "null"])
def test_attention_heads_train_and_evaluate_through_the_jobs(tiny_side_data, tmp_path, aux):
    """Two attention heads (DI-TIN), a semantic one and a behavior-type/recency one, with the bounded and the full
    aux head: the train pipeline traces the heads' one lookup of their H * K selections (and the M sampled), the
    loss falls, and evaluation rebuilds the heads and the wider over-arch from the checkpoint's config."""
    trains_and_evaluates(tiny_side_data, tmp_path, "--model.attention_heads", "[[item, cate], [btype, pos, gap]]",
                         "--model.side_fields", "[btype]", "--model.time_gap", "true", "--sharding.lookup",
                         "sequence", "--model.aux_behaviors", aux)


@pytest.mark.parametrize("variant,lookup", [("dare", "sequence"), ("twin_proj", "singleton_bags")])
def test_target_decoupled_positions_train_and_evaluate_through_the_jobs(tiny_objective_data, tmp_path, variant,
                                                                       lookup):
    """model.position_objectives 2 on a dataset with two planted objectives (synthetic.num_objectives 2): the
    reader's target_objective key passes TorchRec's pipeline, the loss falls, and evaluation rebuilds the [2, N + 1,
    d] position tables and reads the key again from the checkpoint's config."""
    trains_and_evaluates(tiny_objective_data, tmp_path, "--model.variant", variant, "--sharding.lookup", lookup,
                         "--model.position_objectives", "2", "--model.time_gap", "true")


@pytest.mark.parametrize("variant,lookup", [("dare", "sequence"), ("twin", "singleton_bags"),
                                            ("twin_4e", "singleton_bags")])
def test_the_bounded_aux_head_trains_through_the_pipeline(tiny_data, tmp_path, variant, lookup):
    """model.aux_behaviors below max_len: the train pipeline traces the sampled aux head (its own lookup of the
    sampled rows; a shared layout gathers them) and the loss falls as with the full head."""
    run = tmp_path / "run"
    assert train.main(train_args(tiny_data, run, "--model.variant", variant, "--sharding.lookup", lookup,
                                 "--model.aux_behaviors", "8", "--train.max_steps", "12",
                                 "--train.log_every", "1", "--train.val_every", "0")) == 0
    losses = [e["loss"] for e in events(run) if e["event"] == "train"]
    assert len(losses) == 12 and all(map(torch.isfinite, torch.tensor(losses)))
    assert sum(losses[-3:]) < sum(losses[:3])


@pytest.mark.parametrize("optimizer", ["adagrad", "adam", "dense_adam"])
def test_a_successful_run_prints_no_library_warning(tiny_data, tmp_path, optimizer):
    """The known-harmless library warnings are filtered (dare_rec/quiet.py); the job's own lines remain."""
    cli = [sys.executable, "-m", "dare_rec.pipelines.cli"]
    runs = [[*cli, "train", *train_args(tiny_data, tmp_path / "run", "--train.max_steps", "6",
                                        "--train.sparse_optimizer", optimizer)],
            [*cli, "evaluate", "--checkpoint", str(tmp_path / "run"), "--output", str(tmp_path / "e.json")]]
    outputs = []
    for cmd in runs:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        outputs.append(proc.stdout + proc.stderr)
        noisy = [line for line in outputs[-1].splitlines() if "warn" in line.lower()]
        assert not noisy, noisy
    # the pipelining report of our own that replaces TorchRec's warnings
    assert "train pipeline: collections att, rep distribute their input ahead of the step" in outputs[0]


@pytest.mark.parametrize("overrides,message", [
    (["--model.d_att", "0"], "model.d_att: must be > 0"),
    (["--model.top_k", "-1"], "model.top_k: must be > 0"),
    (["--model.variant", "sim"], "model.variant: unknown variant 'sim'"),
    (["--data.path", "/no/such/dataset"], "'/no/such/dataset' does not exist"),
    (["--model.side_fields", "[gap]"],
     "model.side_fields: must be a list of distinct fields of ('btype', 'seller', 'brand')"),
    (["--model.side_fields", "[brand]"],
     "model.side_fields brand needs column(s) ['hist_brand', 'target_brand'] but the dataset"),
    (["--model.side_fields", "[btype]"], "model.side_fields btype needs column(s) ['hist_btype'] but the dataset"),
    (["--model.variant", "twin_hard", "--model.hard_levels", "[cate, brand]"],
     "model.hard_levels brand needs column(s) ['hist_brand', 'target_brand'] but the dataset"),
    (["--model.hard_fill", "soft"], "model.hard_fill: applies to hard search only"),
    (["--model.esu_layers", "2", "--model.variant", "din"], "model.esu_layers: 2 needs score dot"),
    (["--model.attention_heads", "[[item], [btype]]"], "model.attention_heads: head 2: 'btype' is not a field in use"),
])
def test_bad_configuration_fails_before_training(tiny_data, tmp_path, capsys, overrides, message):
    argv = train_args(tiny_data, tmp_path / "run") + overrides
    with pytest.raises(SystemExit) as exit_info:
        train.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def _expect_plan_error(rank, world_size, argv):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      LOCAL_WORLD_SIZE=str(world_size))
    with pytest.raises(SystemExit) as exit_info:
        train.main(argv)
    assert exit_info.value.code == 2


def test_unsatisfiable_plan_fails_on_every_rank_without_hanging(tiny_data, tmp_path):
    # each rank must exit with the configuration error on its own: a rank left waiting in a collective
    # would hit run_on_ranks' timeout instead
    run_on_ranks(_expect_plan_error, 2, train_args(tiny_data, tmp_path / "run", "--sharding.memory_per_rank_mb",
                                                     "0.001"), timeout=90)


def test_non_finite_loss_stops_training_before_checkpointing(tiny_data, tmp_path, monkeypatch, capsys):
    def nan_loss(logits, labels):
        return (logits * float("nan")).mean()

    monkeypatch.setattr(F, "binary_cross_entropy_with_logits", nan_loss)
    # a checkpoint is due at every step, so the check must come before each one
    with pytest.raises(SystemExit) as exit_info:
        train.main(train_args(tiny_data, tmp_path / "run", "--train.checkpoint_every", "1"))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "error: non-finite training loss at step 1 (1 rank-step(s) up to step 1); stopped before anything was " \
           "checkpointed" in err
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "checkpoints").exists()

"""2 ranks: a clear error on one rank ends every rank with that error (exit 2), never a hang; ranks that do not
share the output folder are refused; a SIGKILLed job resumes exactly (the fault drill, short)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dare_rec.data import schema
from dare_rec.pipelines import train
from tests.data.test_parquet import corrupt_page
from tests.conftest import REPO
from tests.multiprocess import run_on_ranks
from tests.pipelines.test_jobs import train_args


def _expect_error(rank, world_size, argvs, fragments):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      LOCAL_WORLD_SIZE=str(world_size))
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exit_info:
        train.main(argvs[rank])
    assert exit_info.value.code == 2, err.getvalue()[-2000:]
    lines = [line for line in err.getvalue().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and all(f in lines[0] for f in fragments), err.getvalue()[-2000:]
    assert "Traceback" not in err.getvalue()


def bad_train_copy(tiny_data, tmp_path, mutate_bytes=None, mutate_table=None):
    """The tiny dataset with row group 1 of the first train file (read by rank 1 of 2 only) damaged."""
    root = tmp_path / "data"
    shutil.copytree(tiny_data, root)
    path = schema.split_files(root, "train")[0]
    if mutate_table is not None:
        pq.write_table(mutate_table(pq.read_table(path)), path, row_group_size=256)
    if mutate_bytes is not None:
        path.write_bytes(bytes(mutate_bytes(bytearray(path.read_bytes()), pq.ParquetFile(path).metadata)))
    assert pq.ParquetFile(path).metadata.row_group(1).num_rows == 256
    return root, path


def test_a_null_id_read_by_one_rank_stops_both_with_its_error(tiny_data, tmp_path):
    def null_target(t):
        items = t["target_item"].to_pylist()
        items[261] = None
        field = pa.field("target_item", pa.int64(), nullable=True)
        return t.set_column(t.schema.get_field_index("target_item"), field, pa.array(items, pa.int64()))

    root, path = bad_train_copy(tiny_data, tmp_path, mutate_table=null_target)
    argv = train_args(root, tmp_path / "run")
    run_on_ranks(_expect_error, 2, [argv, argv],
                 [f"{path} (row group 1, rows 256..511): row 261: column 'target_item' is null"], timeout=150)


def test_a_corrupt_page_read_by_one_rank_stops_both_with_its_error(tiny_data, tmp_path):
    root, path = bad_train_copy(tiny_data, tmp_path, mutate_bytes=corrupt_page)
    argv = train_args(root, tmp_path / "run")
    run_on_ranks(_expect_error, 2, [argv, argv], [f"{path} (row group 1): column 'hist_item' cannot be decoded"],
                 timeout=150)


def test_a_bad_val_row_of_one_rank_stops_both_before_training(tiny_data, tmp_path):
    """The val split is checked before the first step, each rank its own row groups (row group 1: rank 1)."""
    root = tmp_path / "data"
    shutil.copytree(tiny_data, root)
    path = schema.split_files(root, "val")[0]
    table = pq.read_table(path)
    labels = table["label"].to_pylist()
    labels[300] = 5
    table = table.set_column(table.schema.get_field_index("label"), table.schema.field("label"),
                             pa.array(labels, pa.int8()))
    pq.write_table(table, path, row_group_size=256)
    argv = train_args(root, tmp_path / "run")
    run_on_ranks(_expect_error, 2, [argv, argv], [f"{path} (row group 1, rows 256..511): row 300: column 'label' is 5"],
                 timeout=150)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_ranks_that_do_not_share_the_output_folder_are_refused(tiny_data, tmp_path):
    argvs = [train_args(tiny_data, tmp_path / f"rank{r}") for r in range(2)]
    run_on_ranks(_expect_error, 2, argvs, [f"train.output_dir: '{tmp_path / 'rank0'}' is not one folder shared by "
                                           f"all ranks: rank(s) 1 do not see a file rank 0 wrote there"], timeout=150)


def test_sigkilled_jobs_resume_exactly(tiny_data, tmp_path):
    """The fault drill, short: torchx job of 2 processes; one rank killed while a checkpoint is written (the
    component's max_retries restarts it), then the whole job killed during a validation and rerun."""
    output = tmp_path / "drill.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.fault_drill", "--data", str(tiny_data), "--plan",
                           "checkpoint:rank", "validation:job", "--epochs", "1", "--output", str(output)],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(output.read_text())
    first, second = result["kills"]
    assert first["during_checkpoint_write"] and second["during_validation_of_step"]
    for epoch in result["epochs"]:
        assert epoch["samples"] == epoch["samples_reference"] > 0
        assert epoch["lost"] == epoch["duplicated"] == epoch["unexpected"] == 0
    assert result["metrics_events"]["identical"], result["metrics_events"]
    assert result["final_val_auc"]["identical"]
    assert result["resumes"]["every_resume_found_a_complete_checkpoint"], result["resumes"]

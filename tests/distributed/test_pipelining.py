"""The real train pipeline (TorchRec's TrainPipelineSparseDist, built as the training job builds it) overlaps the
input distribution of every sharded collection whose input comes from the batch, on 1 and 2 gloo ranks, for
both table lookups and with the aux head on and off.

A collection is fed by the batch when it looks up every behavior: the attention collection always, the
representation collection when the aux head trains on all behaviors, the shared one always. Without the aux
head (and in evaluation) the representation collection looks up only the behaviors the search selected, so its
input depends on the step itself and cannot be distributed ahead; the test checks that it is the only one.
"""

from __future__ import annotations

import itertools

import torch

from dare_rec.data.parquet import ParquetBatchReader
from dare_rec.data.schema import DatasetMeta
from dare_rec.distributed import DistEnv
from dare_rec.optim import build_optimizer
from dare_rec.pipelines.common import build_sharded_model
from dare_rec.pipelines.train import make_train_pipeline
from tests.conftest import tiny_config
from tests.multiprocess import run_on_ranks

CASES = [(variant, lookup, aux) for variant in ("dare", "twin") for lookup in ("sequence", "singleton_bags")
         for aux in ("true", "false")]


def expected_pipelined(variant: str, aux: str) -> set:
    if variant == "twin":
        return {"shared"}
    return {"att", "rep"} if aux == "true" else {"att"}


def pipelined_collections(rank: int, world_size: int, data_root, variant: str, lookup: str, aux: str) -> set:
    cfg = tiny_config("--data.path", str(data_root), "--model.variant", variant, "--sharding.lookup", lookup,
                      "--model.aux_loss", aux)
    env = DistEnv(rank, world_size, rank, world_size, torch.device("cpu"))
    model = build_sharded_model(cfg, DatasetMeta.read(data_root), env)
    pipeline = make_train_pipeline(cfg.train.pipeline, model, build_optimizer(model, cfg.train), env.device)
    batches = ParquetBatchReader(data_root, "train", 32, cfg.data.max_len, rank=rank, world_size=world_size)
    stream = itertools.islice(iter(batches), 3)
    pipeline.progress(stream)
    pipeline.progress(stream)
    collections = model.module.model.sparse_arch.collections
    return {name for name, module in collections.items() if any(module is m for m in pipeline._pipelined_modules)}


def _check_all_cases(rank: int, world_size: int, data_root) -> None:
    torch.set_num_threads(1)
    for variant, lookup, aux in CASES:
        found = pipelined_collections(rank, world_size, data_root, variant, lookup, aux)
        assert found == expected_pipelined(variant, aux), (variant, lookup, aux, found)


def test_every_collection_fed_by_the_batch_is_pipelined_on_one_rank(tiny_data):
    run_on_ranks(_check_all_cases, 1, tiny_data, timeout=300)


def test_every_collection_fed_by_the_batch_is_pipelined_on_two_ranks(tiny_data):
    run_on_ranks(_check_all_cases, 2, tiny_data, timeout=400)

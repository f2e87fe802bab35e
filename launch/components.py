"""torchx components for dare_rec (file-path components: ``torchx run launch/components.py:train ...``).

Each component is a typed function whose docstring is its ``--help``; both extend the builtin
``dist.ddp`` (torchrun underneath), so ``-j NODESxPROCS`` runs on one machine or many nodes. Arguments after
``--`` are passed to the job (config overrides such as ``--model.d_att 32``).
"""

from typing import Dict, Optional

import torchx.specs as specs
from torchx.components import dist


def _env(omp_threads: int, max_retries: int = 0) -> Dict[str, str]:
    # torchrun sets OMP_NUM_THREADS=1 only when it starts several processes per node; -j Nx1 would let every
    # process use every core, so the thread count is always explicit. PET_MAX_RESTARTS is torchrun's
    # --max-restarts: it restarts the worker group in place when a worker dies (the scheduler's own retries,
    # max_retries on the role, only cover what the scheduler sees, and local_cwd has none). Restarted workers
    # must not share the agent's rendezvous store: gloo's rank addresses of the dead attempt stay in it, and
    # the new attempt then often connects to them and times out (pytorch/pytorch#135712; 2 restarts out of 3
    # failed that way here with torch 2.13).
    return {"OMP_NUM_THREADS": str(omp_threads), "PYTHONUNBUFFERED": "1", "PET_MAX_RESTARTS": str(max_retries),
            "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}


def train(
    *script_args: str,
    config: str = "configs/synthetic.yaml",
    j: str = "1x2",
    name: str = "dare-rec-train",
    h: Optional[str] = None,
    cpu: int = 2,
    gpu: int = 0,
    memMB: int = 8192,
    omp_threads: int = 1,
    max_retries: int = 0,
    rdzv_port: int = 29500,
) -> specs.AppDef:
    """Trains a DARE-family model with DistributedModelParallel (dare_rec.pipelines.train).

    Args:
        script_args: config overrides for the job, after ``--`` (e.g. ``-- --model.d_att 32 --train.epochs 2``)
        config: YAML preset (configs/*.yaml)
        j: NODESxPROCS_PER_NODE, e.g. 1x2 (one machine, two processes) or 2x8 (two nodes of eight GPUs)
        name: job name
        h: named resource of the scheduler (overrides cpu/gpu/memMB)
        cpu: CPUs per replica
        gpu: GPUs per replica
        memMB: memory per replica in MB
        omp_threads: OMP_NUM_THREADS of every process
        max_retries: restarts after a failure (a dead worker: torchrun restarts the worker group; a lost node:
            the scheduler reruns the job, where it supports retries); each restart resumes from the output
            folder's latest checkpoint (train.resume auto)
        rdzv_port: rendezvous port on the rank-0 host for multi-node jobs (single-node jobs pick a free one)
    """
    return dist.ddp("--config", config, *script_args, m="dare_rec.pipelines.train", name=name, h=h, cpu=cpu, gpu=gpu,
                    memMB=memMB, j=j, env=_env(omp_threads, max_retries), max_retries=max_retries,
                    rdzv_port=rdzv_port)


def evaluate(
    *script_args: str,
    checkpoint: str,
    split: str = "test",
    pick: str = "best",
    j: str = "1x2",
    name: str = "dare-rec-evaluate",
    h: Optional[str] = None,
    cpu: int = 2,
    gpu: int = 0,
    memMB: int = 8192,
    omp_threads: int = 1,
    rdzv_port: int = 29500,
) -> specs.AppDef:
    """Evaluates a checkpoint (AUC, GAUC by user and by category, logloss) with pipelines.evaluate.

    Args:
        script_args: extra job arguments after ``--`` (e.g. ``-- --data data/other --output eval.json``)
        checkpoint: checkpoint folder, or a training run's output_dir (then pick chooses its checkpoint)
        split: train, val or test
        pick: for a run's output_dir: best (by validation) or latest
        j: NODESxPROCS_PER_NODE
        name: job name
        h: named resource of the scheduler (overrides cpu/gpu/memMB)
        cpu: CPUs per replica
        gpu: GPUs per replica
        memMB: memory per replica in MB
        omp_threads: OMP_NUM_THREADS of every process
        rdzv_port: rendezvous port on the rank-0 host for multi-node jobs
    """
    return dist.ddp("--checkpoint", checkpoint, "--split", split, "--pick", pick, *script_args,
                    m="dare_rec.pipelines.evaluate", name=name, h=h, cpu=cpu, gpu=gpu, memMB=memMB, j=j, env=_env(omp_threads),
                    rdzv_port=rdzv_port)

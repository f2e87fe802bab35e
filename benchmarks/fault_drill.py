"""Fault drill: a 2-process training job killed with SIGKILL at chosen moments resumes exactly.

Launches the real job the way users do (``torchx run -s local_cwd launch/components.py:train -j 1x2``) twice
on the same data, at the same time: once undisturbed (the reference), once under fire. For each planned kill
it waits for a moment of the given kind in the job's own files, then sends SIGKILL:

* moments: ``step`` (training, between checkpoints), ``checkpoint`` (a ``.tmp-step-*`` folder is being
  written), ``validation`` (the ``train`` event of a validation step is logged and its ``val`` event is not);
* victims: ``rank`` (one worker: torchrun restarts the worker group, which is what the component's
  ``max_retries`` asks for) or ``job`` (every process of the job: the drill reruns the same command, as a
  user or a scheduler would).

After each kill it records which checkpoint ``latest`` names and whether it is complete. When the job has
finished it compares with the reference, from the per-step sample ids each rank writes
(``train.trace_samples``): per epoch, samples lost and duplicated; and every ``train`` and ``val`` event of
metrics.jsonl (losses, AUC, ...), including the final validation AUC. The job runs with
``train.deterministic`` (the default), so equal means identical.

    python -m benchmarks.fault_drill --kills 5 --output benchmarks/results/fault_drill.json
    python -m benchmarks.fault_drill --plan checkpoint:rank validation:job --epochs 1 --output /tmp/drill.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional
from benchmarks import SCRATCH

REPO = Path(__file__).resolve().parents[1]
RESULTS = SCRATCH / "fault_drill.json"  # committed: benchmarks/results (--output)
MOMENTS = ("step", "checkpoint", "validation")
VICTIMS = ("rank", "job")
# The job: frequent checkpoints and validations, so that every kind of moment comes up several times.
JOB_ARGS = ["--train.val_every", "10", "--train.checkpoint_every", "4", "--train.log_every", "2",
            "--train.trace_samples", "true", "--train.dist_timeout_s", "60", "--train.checkpoint_every_minutes", "0"]
_POLL_S = 0.002


@dataclass
class Kill:
    moment: str
    victim: str


def launch(run_dir: Path, data: Path, config: str, epochs: int, max_restarts: int, log: Path) -> subprocess.Popen:
    """Starts the job through torchx (local_cwd), 2 processes, returns the torchx client process."""
    torchx = Path(sys.executable).parent / "torchx"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    cmd = [str(torchx), "run", "-s", "local_cwd", "-cfg", f"log_dir={run_dir.parent / (run_dir.name + '-logs')}",
           "launch/components.py:train", "-j", "1x2", "--max_retries", str(max_restarts), "--config", config, "--",
           "--data.path", str(data), "--train.output_dir", str(run_dir), "--train.epochs", str(epochs), *JOB_ARGS]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=open(log, "a"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def job_processes(run_dir: Path) -> Dict[int, Optional[int]]:
    """pid -> worker rank (None for launchers) of every process whose command line names ``run_dir``."""
    found: Dict[int, Optional[int]] = {}
    needle = str(run_dir).encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            if needle not in cmdline or b"dare_rec.pipelines.train" not in cmdline:
                continue
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        is_worker = b"torch.distributed.run" not in cmdline and b"torchrun" not in cmdline \
            and not cmdline.startswith(b"bash")
        rank = next((int(v[5:]) for v in environ if v.startswith(b"RANK=")), None)
        found[int(entry)] = rank if is_worker else None
    return found


def _events(run_dir: Path) -> List[Dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    events = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:  # a line being written
                pass
    return events


def _trace_max_step(run_dir: Path) -> int:
    path = run_dir / "trace" / "rank-00000.jsonl"
    if not path.is_file():
        return 0
    lines = path.read_text().splitlines()
    for line in reversed(lines):
        try:
            return json.loads(line)["step"]
        except json.JSONDecodeError:
            continue
    return 0


def _writing_checkpoint(run_dir: Path) -> bool:
    root = run_dir / "checkpoints"
    return root.is_dir() and any(p.name.startswith(".tmp-step-") for p in root.iterdir())


def _validating(run_dir: Path) -> Optional[int]:
    """The step being validated, if the log says a validation step's training ended and its val has not."""
    events = _events(run_dir)
    start = next((e for e in events if e["event"] == "start"), None)
    if not events or start is None or events[-1]["event"] != "train":
        return None
    step, spe, total = events[-1]["step"], start["steps_per_epoch"], start["total_steps"]
    val_every = int(JOB_ARGS[JOB_ARGS.index("--train.val_every") + 1])
    return step if step % val_every == 0 or step % spe == 0 or step == total else None


def _attempt_started_after(run_dir: Path, moment: float) -> bool:
    """Whether an attempt of the job logged its start (fresh or resumed) after ``moment`` (time.time())."""
    return any(e["event"] in ("start", "resume") and e["time"] > moment for e in _events(run_dir))


def _wait(condition, what: str, job: subprocess.Popen, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if job.poll() is not None:
            raise RuntimeError(f"the job ended (exit {job.returncode}) while the drill waited for {what}")
        time.sleep(_POLL_S)
    raise TimeoutError(f"no {what} within {timeout_s:.0f}s")


def _kill_all(run_dir: Path, job: subprocess.Popen) -> None:
    """SIGKILL to the torchx client and every process of the job, until none is left."""
    pids = [job.pid, *job_processes(run_dir)]
    deadline = time.monotonic() + 30
    while pids and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        job.poll()
        time.sleep(0.02)
        pids = list(job_processes(run_dir))
    job.wait()


def drill(data: Path, workdir: Path, kills: List[Kill], config: str, epochs: int, seed: int,
          timeout_s: float = 300.0) -> Dict[str, Any]:
    """Runs the reference and the drilled job in ``workdir``; returns the comparison (see the module doc)."""
    jobs: List[tuple] = []
    try:
        return _drill(data, workdir, kills, config, epochs, random.Random(seed), timeout_s, jobs)
    finally:  # leave no process behind, whatever happened
        for run_dir, job in jobs:
            if job.poll() is None or job_processes(run_dir):
                _kill_all(run_dir, job)


def _drill(data: Path, workdir: Path, kills: List[Kill], config: str, epochs: int, rng: random.Random,
           timeout_s: float, jobs: List[tuple]) -> Dict[str, Any]:
    started = time.perf_counter()
    reference = workdir / "reference"  # runs at the same time as the drilled job
    ref_job = launch(reference, data, config, epochs, 0, workdir / "reference.log")
    jobs.append((reference, ref_job))
    run = workdir / "drill"
    log = workdir / "drill.log"
    restarts = sum(k.victim == "rank" for k in kills)
    job = launch(run, data, config, epochs, restarts, log)
    jobs.append((run, job))
    records = []
    launched = time.time()
    start = _wait(lambda: next((e for e in _events(run) if e["event"] == "start"), None), "the job's start", job,
                  timeout_s)
    total = start["total_steps"]
    for i, kill in enumerate(kills):
        # kill i comes after step ~(i + 1) / (kills + 1) of the run, so the kills spread over the epochs
        target = total * (i + 1) // (len(kills) + 1) + rng.randint(-2, 2)
        _wait(lambda: _attempt_started_after(run, launched), "a running attempt", job, timeout_s)
        _wait(lambda: _trace_max_step(run) >= target, f"step {target}", job, timeout_s)
        if kill.moment == "checkpoint":
            _wait(lambda: _writing_checkpoint(run), "a checkpoint write", job, timeout_s)
            time.sleep(rng.uniform(0, 0.01))
        elif kill.moment == "validation":
            _wait(lambda: _validating(run), "a validation", job, timeout_s)
            time.sleep(rng.uniform(0, 0.05))
        else:
            target = _trace_max_step(run) + rng.randint(1, 3)
            _wait(lambda: _trace_max_step(run) >= target and not _writing_checkpoint(run)
                  and not _validating(run), f"step {target}", job, timeout_s)
            time.sleep(rng.uniform(0, 0.05))
        at_step = _trace_max_step(run)
        validating, writing = _validating(run), _writing_checkpoint(run)
        if kill.victim == "rank":
            workers = {rank: pid for pid, rank in job_processes(run).items() if rank is not None}
            if not workers:
                raise RuntimeError("no worker to kill")
            victim = rng.choice(sorted(workers))
            os.kill(workers[victim], signal.SIGKILL)
        else:
            victim = None
            _kill_all(run, job)
        latest = run / "checkpoints" / "latest"
        latest_name = latest.read_text().strip() if latest.is_file() else None
        complete = latest_name is None or all(
            (run / "checkpoints" / latest_name / f).is_file() for f in (".metadata", "train_state.json", "config.yaml"))
        record = {**asdict(kill), "killed_rank": victim, "trace_step": at_step,
                  "during_checkpoint_write": writing, "during_validation_of_step": validating,
                  "latest_after_kill": latest_name, "latest_complete": complete}
        records.append(record)
        print(f"kill {len(records)}: {kill.victim} during {kill.moment} at step ~{at_step}; latest = {latest_name}",
              flush=True)
        launched = time.time()
        if kill.victim == "job":
            job = launch(run, data, config, epochs, restarts, log)
            jobs.append((run, job))
    if job.wait(timeout=timeout_s) != 0:
        raise RuntimeError(f"the drilled job failed; see {log}")
    if ref_job.wait(timeout=timeout_s) != 0:
        raise RuntimeError(f"the reference job failed; see {workdir / 'reference.log'}")
    return {"total_wall_s": time.perf_counter() - started, "kills": records, **compare(reference, run, records)}


def _trace(run: Path) -> Dict[int, Counter]:
    """epoch -> sample ids seen (every rank, the last line written for each step)."""
    per_step: Dict[tuple, Dict[str, Any]] = {}
    for path in sorted((run / "trace").glob("rank-*.jsonl")):
        for line in path.read_text().splitlines():
            event = json.loads(line)
            per_step[(path.name, event["step"])] = event
    epochs: Dict[int, Counter] = {}
    for event in per_step.values():
        epochs.setdefault(event["epoch"], Counter()).update(event["ids"])
    return epochs


def _comparable(run: Path) -> List[Dict[str, Any]]:
    drop = {"time", "samples_per_s", "val_time_s"}
    return [{k: v for k, v in e.items() if k not in drop} for e in _events(run) if e["event"] in ("train", "val")]


def compare(reference: Path, run: Path, records: List[Dict[str, Any]]) -> Dict[str, Any]:
    ref_epochs, run_epochs = _trace(reference), _trace(run)
    epochs = []
    for epoch in sorted(set(ref_epochs) | set(run_epochs)):
        ref, got = ref_epochs.get(epoch, Counter()), run_epochs.get(epoch, Counter())
        epochs.append({"epoch": epoch, "samples_reference": sum(ref.values()), "samples": sum(got.values()),
                       "lost": sum((ref - got).values()), "duplicated": sum(c - 1 for c in got.values() if c > 1),
                       "unexpected": sum((got - ref).values()) - sum(c - 1 for c in got.values() if c > 1)})
    ref_events, run_events = _comparable(reference), _comparable(run)
    differing = [r.get("step") for r, g in zip(ref_events, run_events) if r != g]
    ref_val = [e for e in ref_events if e["event"] == "val"]
    run_val = [e for e in run_events if e["event"] == "val"]
    resumes = [e for e in _events(run) if e["event"] == "resume"]
    resumed_from = [e["checkpoint"] for e in resumes]
    expected = [r["latest_after_kill"] for r in records if r["latest_after_kill"] is not None]
    return {
        "epochs": epochs,
        "metrics_events": {"reference": len(ref_events), "drill": len(run_events),
                           "identical": ref_events == run_events, "differing_steps": differing},
        "final_val_auc": {"reference": ref_val[-1]["auc"], "drill": run_val[-1]["auc"],
                          "identical": ref_val[-1]["auc"] == run_val[-1]["auc"]},
        "resumes": {"resumed_from": resumed_from, "latest_after_each_kill": [r["latest_after_kill"] for r in records],
                    "every_resume_found_a_complete_checkpoint":
                        all(r["latest_complete"] for r in records) and resumed_from == expected},
    }


def kill_plan(n: int, rng: random.Random) -> List[Kill]:
    """``n`` kills covering every moment (at least one during a checkpoint write) and both victims."""
    moments = [MOMENTS[(i + 1) % len(MOMENTS)] for i in range(n)]
    rng.shuffle(moments)
    victims = [VICTIMS[i % 2] for i in range(n)]
    rng.shuffle(victims)
    return [Kill(m, v) for m, v in zip(moments, victims)]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/tiny.yaml")
    parser.add_argument("--data", help="dataset folder (default: the config's synthetic data, generated in a "
                                       "temporary folder)")
    parser.add_argument("--kills", type=int, default=5, help="number of kills, planned at random (see --plan)")
    parser.add_argument("--plan", nargs="+", metavar="MOMENT:VICTIM",
                        help=f"these kills in this order instead, e.g. checkpoint:rank validation:job "
                             f"(moments {', '.join(MOMENTS)}; victims {', '.join(VICTIMS)})")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill plan and timings")
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    if args.plan:
        pairs = [item.split(":") for item in args.plan]
        bad = [item for item, pair in zip(args.plan, pairs)
               if len(pair) != 2 or pair[0] not in MOMENTS or pair[1] not in VICTIMS]
        if bad:
            parser.error(f"--plan {bad[0]!r}: expected MOMENT:VICTIM with MOMENT in {MOMENTS}, VICTIM in {VICTIMS}")
        kills = [Kill(moment, victim) for moment, victim in pairs]
    else:
        kills = kill_plan(args.kills, rng)
    with tempfile.TemporaryDirectory(prefix="fault-drill-") as tmp:
        data = Path(args.data) if args.data else _generate(args.config, Path(tmp) / "data")
        result = drill(data, Path(tmp), kills, args.config, args.epochs, args.seed)
    result = {"benchmark": "fault_drill", "date": time.strftime("%Y-%m-%d"), "config": args.config,
              "job_args": ["--train.epochs", str(args.epochs), *JOB_ARGS], "processes": 2, "seed": args.seed,
              **result}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    for e in result["epochs"]:
        print(f"epoch {e['epoch']}: {e['samples']} samples (reference {e['samples_reference']}), "
              f"lost {e['lost']}, duplicated {e['duplicated']}")
    print(f"metrics.jsonl train/val events identical: {result['metrics_events']['identical']}; final val AUC "
          f"{result['final_val_auc']['drill']} vs {result['final_val_auc']['reference']}; every resume found a "
          f"complete checkpoint: {result['resumes']['every_resume_found_a_complete_checkpoint']}")
    print(f"wrote {args.output}")
    return 0


def _generate(config: str, root: Path) -> Path:
    from dare_rec.config import load_config
    from dare_rec.data.synthetic import generate

    generate(load_config(REPO / config).synthetic, root, progress=False)
    return root


if __name__ == "__main__":
    sys.exit(main())

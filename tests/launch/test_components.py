"""torchx components: they validate as torchx components and build the intended torchrun jobs."""

from __future__ import annotations

from torchx.components.component_test_base import ComponentTestCase

from dare_rec.launch import components


class ComponentsTest(ComponentTestCase):
    def test_components_validate(self) -> None:
        self.validate(components, "train")
        self.validate(components, "evaluate")

    def test_train_runs_the_train_module_with_config_and_overrides(self) -> None:
        app = components.train("--model.d_att", "32", config="configs/tiny.yaml", j="2x1", omp_threads=3)
        (role,) = app.roles
        assert role.num_replicas == 2
        command = " ".join(role.args)
        assert "-m dare_rec.pipelines.train --config configs/tiny.yaml --model.d_att 32" in command
        assert "--nnodes 2" in command and "--nproc_per_node 1" in command
        assert role.env["OMP_NUM_THREADS"] == "3"

    def test_max_retries_restarts_workers_in_place_and_through_the_scheduler(self) -> None:
        # a restarted job reruns the same command, which resumes from the latest checkpoint (train.resume auto);
        # a worker killed in a real job and resumed this way: tests/pipelines/test_rank_failures.py
        (role,) = components.train(config="configs/tiny.yaml", max_retries=3).roles
        assert role.env["PET_MAX_RESTARTS"] == "3"  # torchrun --max-restarts
        assert role.env["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] == "1"  # restarted workers can connect
        assert role.max_retries == 3
        (role,) = components.train(config="configs/tiny.yaml").roles
        assert role.env["PET_MAX_RESTARTS"] == "0" and role.max_retries == 0

    def test_evaluate_runs_the_evaluate_module_on_a_checkpoint(self) -> None:
        app = components.evaluate("--output", "e.json", checkpoint="runs/x", split="val", j="1x2")
        (role,) = app.roles
        command = " ".join(role.args)
        assert "-m dare_rec.pipelines.evaluate --checkpoint runs/x --split val --pick best --output e.json" in command
        assert "--nproc_per_node 2" in command

"""What gets installed, and which layer may import which: one top-level name (``dare_rec``), no benchmark
code in the wheel or the tests, and the custom ops reached only through their dispatchers."""

from __future__ import annotations

import ast
import configparser
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import REPO

CODE = ("dare_rec", "pipelines", "sharding", "launch", "benchmarks")


def imported_modules(path: Path) -> set:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_wheel_installs_only_dare_rec(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                           str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("dare_rec-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"dare_rec"}
    for job in ("pipelines/train.py", "sharding/planner.py", "launch/components.py"):
        assert f"dare_rec/{job}" in names
    assert not any("benchmarks" in n for n in names)


def test_setup_cfg_lists_every_package():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    listed = set(cfg["options"]["packages"].split())
    mapped = dict(line.split(" = ") for line in cfg["options"]["package_dir"].strip().splitlines())
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "dare_rec").rglob("__init__.py")}
    found |= {name for name, folder in mapped.items() if (REPO / folder / "__init__.py").is_file()}
    assert listed == found


def test_code_reaches_the_ops_only_through_their_dispatchers():
    offenders = []
    for top in CODE:
        for path in (REPO / top).rglob("*.py"):
            if path.is_relative_to(REPO / "dare_rec" / "ops"):
                continue
            bad = {m for m in imported_modules(path) if m.startswith(("dare_rec.ops.pytorch", "dare_rec.ops.triton"))}
            if bad:
                offenders.append(f"{path.relative_to(REPO)}: {sorted(bad)}")
    assert not offenders, offenders


def test_code_imports_the_jobs_by_their_installed_names_and_tests_no_benchmark_internals():
    offenders = []
    for top in CODE + ("tests",):
        for path in (REPO / top).rglob("*.py"):
            for module in imported_modules(path):
                head = module.split(".")[0]
                if head in ("pipelines", "sharding", "launch") or (top == "tests" and head == "benchmarks"):
                    offenders.append(f"{path.relative_to(REPO)}: {module}")
    assert not offenders, offenders

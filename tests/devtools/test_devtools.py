"""simplefold.devtools: torch-free helpers for official-code fixtures and benchmarks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import FIXTURES
from simplefold.devtools.official import official_state_dict_shapes, package_root
from simplefold.model import FoldingConfig

OFFICIAL = FIXTURES / "official"


@pytest.mark.parametrize("arch", ["hd72", "w768", "w2048"])
def test_state_dict_shapes_match_the_official_model(arch):
    # the fixture json records the official FoldingDiT.state_dict() shapes (torch, official tree)
    rec = json.loads((OFFICIAL / f"{arch}.json").read_text())
    got = official_state_dict_shapes(FoldingConfig.from_official(rec["summary"]))
    want = {k: tuple(v) for k, v in rec["state_dict_shapes"].items()}
    assert got == want


def test_importing_devtools_needs_no_torch():
    code = "import sys, simplefold.devtools.official, simplefold.devtools.torch_writer; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_package_root_rejects_other_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="not an apple/ml-simplefold tree"):
        package_root(tmp_path)
    pkg = tmp_path / "src" / "simplefold" / "model" / "torch"
    pkg.mkdir(parents=True)
    (pkg / "architecture.py").write_text("")
    assert package_root(tmp_path) == tmp_path / "src" / "simplefold"
    assert package_root(tmp_path / "src" / "simplefold") == tmp_path / "src" / "simplefold"

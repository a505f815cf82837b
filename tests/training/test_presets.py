"""The shipped run configs (train/*.json): each states only what differs from its base or the
defaults, and each size preset is the pre-training recipe with that size."""

from __future__ import annotations

import dataclasses
import json

import pytest
from conftest import REPO

from simplefold.model.config import OFFICIAL_SIZES, FoldingConfig
from simplefold.training.config import ConfigError, TrainConfig, load_config, read_config_json
from simplefold.training.plddt import PLDDTTrainConfig, load_plddt_config

TRAIN = REPO / "train"
SHIPPED = sorted(p.name for p in TRAIN.glob("*.json"))
PLDDT = {"demo_plddt.json"}
SIZE_PRESETS = {f"simplefold_{n.split('_', 1)[1].replace('.', '_')}.json": n for n in OFFICIAL_SIZES}


def _load(name: str):
    return (load_plddt_config if name in PLDDT else load_config)(TRAIN / name)


def _restated(data: dict, inherited: dict, where: str = "") -> list[str]:
    out = []
    for key, value in data.items():
        if isinstance(value, dict) and isinstance(inherited.get(key), dict) and key != "overrides":
            out += _restated(value, inherited[key], f"{where}{key}.")
        elif key in inherited and inherited[key] == value:
            out.append(f"{where}{key}")
    return out


def test_every_train_size_has_a_preset():
    assert set(SIZE_PRESETS) <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_config_states_only_what_it_changes(name):
    raw = json.loads((TRAIN / name).read_text())
    raw.pop("description")
    base = raw.pop("base", None)
    defaults = (PLDDTTrainConfig() if name in PLDDT else TrainConfig()).to_dict()
    inherited = load_config(TRAIN / base).to_dict() if base else defaults
    assert _restated(raw, inherited) == [], f"{name} restates values it inherits"
    config = _load(name)
    overrides = config.to_dict().get("model", {}).get("overrides", {})
    preset = getattr(FoldingConfig, config.model.preset)() if name not in PLDDT else None
    assert [k for k, v in overrides.items() if getattr(preset, k) == v] == [], f"{name} overrides a preset value with itself"


@pytest.mark.parametrize("name", sorted(SIZE_PRESETS))
def test_size_preset_is_the_pretraining_recipe_with_its_size(name):
    recipe = load_config(TRAIN / "simplefold_100M.json")
    config = load_config(TRAIN / name)
    size = SIZE_PRESETS[name]
    assert OFFICIAL_SIZES[size]() == getattr(FoldingConfig, config.model.preset)()
    assert config.loop.output_dir == f"runs/{name.removesuffix('.json')}"
    assert config.mesh.fsdp in (1, 8)
    same_size = dataclasses.replace(
        config, model=recipe.model, loop=dataclasses.replace(config.loop, output_dir=recipe.loop.output_dir),
        mesh=recipe.mesh,
    )
    assert same_size == recipe  # nothing else differs from the recipe


def test_base_files_merge_section_by_section_and_refuse_cycles(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"description": "a", "optim": {"lr": 0.5, "warmup_steps": 3}}))
    (tmp_path / "b.json").write_text(json.dumps({"base": "a.json", "optim": {"lr": 0.25}}))
    assert read_config_json(tmp_path / "b.json") == {"optim": {"lr": 0.25, "warmup_steps": 3}}
    config = load_config(tmp_path / "b.json")
    assert (config.optim.lr, config.optim.warmup_steps) == (0.25, 3)
    (tmp_path / "c.json").write_text(json.dumps({"base": "d.json"}))
    (tmp_path / "d.json").write_text(json.dumps({"base": "c.json"}))
    with pytest.raises(ConfigError, match="cycle"):
        read_config_json(tmp_path / "c.json")

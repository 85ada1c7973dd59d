"""The run config on its own: JSON round trips, strict loading, flat options over the model family's defaults."""

from __future__ import annotations

import json
from dataclasses import FrozenInstanceError

import pytest

from counterfeit.config import ConfigError, RunConfig, extend_config, load_config, make_config, option_type
from counterfeit.models import MODELS, get_spec


@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_model_default_round_trips_through_config_json(model, tmp_path):
    """What train writes (to_json) reads back equal, for each model family's defaults."""
    cfg = make_config(model=model, data="ring8" if get_spec(model).data_kind == "points" else "fashion-mnist")
    (tmp_path / "config.json").write_text(cfg.to_json() + "\n")
    assert load_config(tmp_path / "config.json") == cfg


def test_config_is_frozen_and_replace_copies():
    cfg = make_config()
    with pytest.raises(FrozenInstanceError):
        cfg.loop.batch_size = 1  # type: ignore[misc]
    other = cfg.replace(loop={"batch_size": 32})
    assert other.loop.batch_size == 32 and cfg.loop.batch_size == 64


@pytest.mark.parametrize(
    "edit, says",
    [(lambda d: d["loop"].update(batch_sise=64), "config.loop has unknown field(s) batch_sise"),
     (lambda d: d["loop"].update(batch_size="64"), "config.loop.batch_size"),
     (lambda d: d.update(loop=[]), "config.loop must be a JSON object")],
)  # fmt: skip
def test_a_hand_edited_config_is_one_line_naming_the_file_and_field(tmp_path, edit, says):
    d = json.loads(make_config().to_json())
    edit(d)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(d))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg and says in msg


def test_flat_options_take_the_model_defaults_and_units():
    """dcgan registers its own defaults (hinge, 600 kimg); an option given wins; kimg lands in loop.total_kimg."""
    assert make_config().loss.name == "hinge" and make_config().loop.total_kimg == 600.0
    assert make_config(model="cdcgan").loss.name == "ns"
    cfg = make_config(kimg=12.5, lr_g=1e-4, loss="ns")
    assert (cfg.loop.total_kimg, cfg.optim.lr_g, cfg.loss.name) == (12.5, 1e-4, "ns")
    assert option_type("batch_size") is int and option_type("kimg") is float and option_type("mbstd") is bool
    with pytest.raises(ConfigError, match="unknown option 'batch'"):
        make_config(batch=3)
    with pytest.raises(ConfigError, match="give --kimg or --epochs, not both"):
        make_config(kimg=1.0, epochs=1.0)
    assert extend_config(make_config(), kimg=700.0).loop.total_kimg == 700.0


def test_epochs_become_kimg_from_the_data_size(tiny_folder):
    """--epochs E is E passes over the training set, stored as kimg (the folder's 96 images here)."""
    n = 96  # two class folders of 48
    cfg = make_config(data=tiny_folder, epochs=2.5)
    assert cfg.loop.total_kimg == round(2.5 * n / 1000, 3)
    with pytest.raises(ConfigError, match="--epochs must be a positive number"):
        make_config(data=tiny_folder, epochs=float("inf"))


def test_a_config_without_a_newer_field_still_loads():
    """Missing fields take the dataclass defaults: an older config.json without a newer field still loads."""
    d = json.loads(make_config().to_json())
    del d["loss"]["twin_ac"]
    assert RunConfig.from_dict(d) == make_config()


@pytest.mark.parametrize("options", [{"d_steps": 0}, {"beta1": 1.0}, {"beta2": 1.0}])
def test_config_refuses_steps_and_betas_at_the_boundary(options):
    """No D step, or an Adam beta of 1 (its moment never moves), is refused up front."""
    with pytest.raises(ConfigError):
        make_config(**options)


def test_a_config_saved_with_a_byte_order_mark_loads(tmp_path):
    """Notepad (before Windows 10 1903) saves UTF-8 with a BOM; json.loads of the text refused it."""
    cfg = make_config(model="dcgan", data="fashion-mnist", kimg=1)
    (tmp_path / "config.json").write_bytes(b"\xef\xbb\xbf" + cfg.to_json().encode())
    assert load_config(tmp_path / "config.json") == cfg

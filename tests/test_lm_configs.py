"""Every committed LM config loads into LMTrainConfig as written (a renamed field breaks here, not in a 2-hour run)."""

from pathlib import Path

import pytest

from vidgpt.config import load_config
from vidgpt.errors import ConfigError
from vidgpt.train.lm_data import kind_weights
from vidgpt.train.lm_trainer import LMTrainConfig

LM_CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs" / "lm").glob("*.yaml"))


@pytest.mark.parametrize("path", LM_CONFIGS, ids=lambda p: p.name)
def test_committed_lm_config_loads(path):
    cfg = load_config(LMTrainConfig, path)
    assert cfg.train.steps > 0 and cfg.train.lr > 0
    assert cfg.data.sources and all(s.weight > 0 for s in cfg.data.sources)
    kind_weights(cfg.data)  # loss_on names are known kinds


def test_a_misspelt_field_is_refused(tmp_path):
    bad = tmp_path / "bad.yaml"
    shipped = Path(LM_CONFIGS[0]).parent / "default_model_p10.yaml"
    bad.write_text(shipped.read_text().replace("motion_loss_weight:", "motion_los_weight:"))
    with pytest.raises(ConfigError, match="motion_los_weight"):
        load_config(LMTrainConfig, bad)

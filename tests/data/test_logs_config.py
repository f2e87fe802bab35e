"""The logs config section: overrides, and validation errors naming the dotted field."""

from __future__ import annotations

import pytest

from dare_rec.config import ConfigError, load_config


def test_overrides_reach_the_logs_section():
    cfg = load_config(None, ["--logs.min_len", "50", "--logs.behaviors", "[pv, buy]", "--logs.skip_malformed", "true"])
    assert cfg.logs.min_len == 50 and cfg.logs.behaviors == ["pv", "buy"] and cfg.logs.skip_malformed
    assert cfg.logs.train_positions() == [3 + 5 * i for i in range(19)]  # the paper's 3, 8, ..., 93


@pytest.mark.parametrize("overrides, message", [
    (["--logs.negatives", "-1"], "logs.negatives: must be >= 0"),
    (["--logs.max_len", "0"], "logs.max_len: must be > 0"),
    (["--logs.min_len", "1"], "logs.min_len: must be >= logs.val_position and logs.test_position (2)"),
    (["--logs.val_position", "8"], "logs.val_position: 8 is also a train position"),
    (["--logs.test_position", "2"], "logs.val_position: must differ from logs.test_position"),
    (["--logs.behaviors", "[]"], "logs.behaviors: must be null or a non-empty list"),
    (["--logs.behaviors", "[0]"], "logs.behaviors[0]: expected a string, got 0"),
    (["--logs.event_format", "xls"], "logs.event_format: unknown format 'xls'"),
    (["--logs.event_delimiter", "ab"], "logs.event_delimiter: must be one character"),
    (["--logs.event_item_col", "user_id"], "logs.event_item_col: column 'user_id' is already logs.event_user_col"),
    (["--logs.min_lenn", "3"], "logs.min_lenn: unknown field"),
])
def test_bad_values_name_the_field(overrides, message):
    with pytest.raises(ConfigError) as e:
        load_config(None, overrides)
    assert str(e.value).startswith(message)

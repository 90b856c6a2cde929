"""Config values from hostile hands: every key, any value, through `--set` and through a YAML file.

The loader either accepts a value its rule allows (and the resolved config holds it) or gives one
sentence naming the key and what is allowed; never another exception. A list of known bad values
is checked one by one.
"""

from __future__ import annotations

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from hiclr.common.errors import UserError
from hiclr.config import load_config, schema_for

SCHEMA = schema_for("stgcn")  # the default encoder's model keys with the rest
KEYS = sorted(f"{section}.{key}" for section, keys in SCHEMA.items() for key in keys)
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.lists(st.one_of(st.integers(-5, 5), st.text(max_size=3)), max_size=3),
    st.sampled_from(["1e-3", "-1", "abc", "[a]", "{a: 1}", "10**23", "nan", ".inf", "0", "''"]),
)
SETTINGS = settings(
    max_examples=300,
    deadline=None,
    database=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)


@SETTINGS
@given(st.sampled_from(KEYS), values)
def test_any_value_through_set_is_accepted_by_its_rule_or_named_in_one_sentence(key, value):
    text = value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True).strip()
    text = text.removesuffix("\n...").strip()
    try:
        cfg = load_config(None, [f"{key}={text}"])
    except UserError as err:
        assert "\n" not in str(err) and key.split(".")[-1] in str(err)
        return
    section, name = key.split(".")
    rule = SCHEMA[section][name].rule
    stored = cfg[section][name]
    assert (stored is None and rule.none) or rule.check(stored) == stored


@SETTINGS
@given(st.sampled_from(KEYS), values)
def test_any_value_in_a_config_file_is_accepted_by_its_rule_or_named_in_one_sentence(tmp_path_factory, key, value):
    section, name = key.split(".")
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_text(yaml.safe_dump({section: {name: value}}))
    try:
        load_config(path)
    except UserError as err:
        assert "\n" not in str(err) and name in str(err)


@pytest.mark.parametrize(
    "override",
    [
        "optim.lr=-1",
        "optim.momentum=-1",
        "optim.weight_decay=-1",
        "optim.lr=abc",
        "optim.milestones=[a]",
        "model.width=0",
        "run.seed=-1",
        "run.seed=100000000000000000000000",
        "optim.grad_clip=-1",
        "data.max_samples=-5",
        "ssl.momentum=2",
        "run.save_every=-1",
    ],
)
def test_known_bad_values_are_refused_naming_key_and_value(override):
    key, value = override.split("=")
    with pytest.raises(UserError) as err:
        load_config(None, [override])
    message = str(err.value)
    assert f"`{key}` is" in message and value.strip("[]") in message and "must be" in message


def test_a_number_written_as_text_becomes_the_number():
    assert load_config(None, ["optim.lr=1e-3"])["optim"]["lr"] == 0.001

"""The registry helper: names to entries, one sentence for a name that is not registered."""

import pytest

from hiclr.registry import Registry, UnknownName


def test_register_adds_the_entry_under_its_name_and_returns_it():
    things = Registry("thing")

    @things.register("alpha")
    class Alpha:
        pass

    assert things["alpha"] is Alpha and things.lookup("alpha") is Alpha and "alpha" in things


def test_a_second_entry_under_the_same_name_is_refused():
    things = Registry("thing")
    things.register("alpha")(int)
    things.register("alpha")(int)  # the same entry again is harmless
    with pytest.raises(ValueError, match="thing 'alpha' is already registered"):
        things.register("alpha")(float)


def test_an_unknown_name_names_the_closest_entry_and_lists_every_known_one():
    things = Registry("encoder", config_key="model.name")
    for name in ("stgcn", "dsta"):
        things.register(name)(object)
    with pytest.raises(UnknownName) as err:
        things.lookup("stgnc")
    assert str(err.value) == (
        "unknown encoder 'stgnc' in model.name (did you mean 'stgcn'?); known encoders: dsta, stgcn"
    )
    assert isinstance(err.value, ValueError)


def test_a_check_can_refuse_an_entry_before_it_is_registered():
    def must_be_a_type(entry):
        if not isinstance(entry, type):
            raise ValueError("not a class")

    things = Registry("thing")
    with pytest.raises(ValueError, match="not a class"):
        things.register("alpha", check=must_be_a_type)(3)
    assert "alpha" not in things

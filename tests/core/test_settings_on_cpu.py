"""``load_settings``: the one door typed settings come in by (verl's ``omega_conf_to_dataclass``)."""

from __future__ import annotations

import dataclasses

import pytest
from omegaconf import OmegaConf

from masksearch.core.settings import load_settings


@dataclasses.dataclass
class Inner:
    weight: float = 0.5
    names: list[str] = dataclasses.field(default_factory=lambda: ["a"])


@dataclasses.dataclass
class Group:
    topk: int = 3
    mode: str = "fixed"
    limit: int | None = None
    on: bool = True
    inner: Inner = dataclasses.field(default_factory=Inner)

    def __post_init__(self) -> None:
        if not isinstance(self.topk, int) or self.topk < 1:
            raise ValueError(f"topk must be an int >= 1, got {self.topk!r}")


@dataclasses.dataclass
class Outer:
    first: Inner = dataclasses.field(default_factory=Inner)
    second: Inner = dataclasses.field(default_factory=lambda: Inner(weight=2.0))


@dataclasses.dataclass(frozen=True)
class FrozenInner:
    level: int = 1


@dataclasses.dataclass(frozen=True)
class Frozen:
    inner: FrozenInner = FrozenInner()


class TestLoadSettings:
    @pytest.mark.parametrize(
        "values",
        [
            None,  # group absent from the config
            {},  # group present but empty
            OmegaConf.create({}),  # empty DictConfig
        ],
    )
    def test_empty_gives_defaults(self, values):
        assert load_settings(Group, values, "masksearch.g") == Group()

    @pytest.mark.parametrize("as_dictconfig", [False, True])
    def test_dict_and_dictconfig_override(self, as_dictconfig):
        values = {"topk": 5, "inner": {"weight": 1.0}}
        if as_dictconfig:
            values = OmegaConf.create(values)
        got = load_settings(Group, values, "masksearch.g")
        assert got == Group(topk=5, inner=Inner(weight=1.0))
        assert isinstance(got.inner, Inner) and isinstance(got.inner.names, list)

    def test_yaml_strings_are_converted(self):
        # command-line overrides arrive as strings; OmegaConf converts them to the field type
        assert load_settings(Group, {"topk": "7", "limit": "2"}, "g") == Group(topk=7, limit=2)

    def test_interpolation_resolved_against_whole_config(self):
        cfg = OmegaConf.create({"trainer": {"k": 4}, "masksearch": {"g": {"topk": "${trainer.k}"}}})
        assert load_settings(Group, cfg.masksearch.g, "masksearch.g").topk == 4

    @pytest.mark.parametrize(
        ("values", "message"),
        [
            # misspelled top-level key: every unknown key listed, plus the valid ones
            (
                {"topkk": 1, "modee": "x"},
                "Unknown masksearch.g key(s) ['modee', 'topkk']; valid: ['topk', 'mode', 'limit', 'on', 'inner']",
            ),
            # misspelled key inside a nested dataclass names the nested group
            (
                {"inner": {"weigth": 1}},
                "Unknown masksearch.g.inner key(s) ['weigth']; valid: ['weight', 'names']",
            ),
        ],
    )
    def test_unknown_keys_rejected(self, values, message):
        with pytest.raises(ValueError) as info:
            load_settings(Group, values, "masksearch.g")
        assert str(info.value) == message

    @pytest.mark.parametrize(
        ("values", "message"),
        [
            ({"mode": ["a"]}, "masksearch.g.mode must be a string, got ['a']"),  # no check of its own
            ({"limit": "z"}, "masksearch.g.limit must be an int or null, got 'z'"),  # optional int
            (
                {"inner": {"weight": "heavy"}},
                "masksearch.g.inner.weight must be a number, got 'heavy'",
            ),  # nested
            (
                {"inner": "heavy"},
                "masksearch.g.inner must be a group of settings (weight, names), got 'heavy'",
            ),
            ({"on": "yes"}, "masksearch.g.on must be true or false, got 'yes'"),  # OmegaConf would say True
            # the dataclass's own __post_init__ check words it when it has one
            ({"topk": "x"}, "masksearch.g: topk must be an int >= 1, got 'x'"),
            ({"topk": None}, "masksearch.g: topk must be an int >= 1, got None"),
        ],
    )
    def test_wrong_type_rejected(self, values, message):
        with pytest.raises(ValueError) as info:
            load_settings(Group, values, "masksearch.g")
        assert str(info.value) == message

    def test_nested_group_laid_over_the_field_default(self):
        # a nested group keeps its field's default instance, not the nested class's defaults
        got = load_settings(Outer, {"second": {"names": ["b"]}}, "o")
        assert got.second == Inner(weight=2.0, names=["b"]) and got.first == Inner()
        assert load_settings(Outer, {"second": None}, "o").second == Inner(weight=2.0)

    def test_frozen_nested_dataclasses(self):
        got = load_settings(Frozen, {"inner": {"level": 3}}, "f")
        assert got == Frozen(inner=FrozenInner(level=3))

    def test_post_init_check_is_one_line_with_group(self):
        with pytest.raises(ValueError, match=r"^masksearch.g: topk must be an int >= 1, got 0$"):
            load_settings(Group, {"topk": 0}, "masksearch.g")

    def test_not_a_mapping(self):
        with pytest.raises(
            ValueError,
            match=r"^masksearch.g must be a group of settings \(topk, mode, limit, on, inner\), got 3$",
        ):
            load_settings(Group, 3, "masksearch.g")

    def test_not_a_dataclass(self):
        with pytest.raises(TypeError, match="needs a dataclass"):
            load_settings(dict, {}, "g")

"""Settings drive the CLI: choices come from Literal fields, constraints are checked where the
arguments are parsed, errors name the flag the user typed, one separability verdict."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel, Field

from cure_core.circuits import AttributionSettings
from cure_core.cli.options import CliParser, SettingsOptions
from cure_core.errors import CureError
from cure_core.groups import GroupSettings, ModuleGroups
from cure_core.model.recipe import Recipe, recipe_from_json
from cure_core.settings import choices


class Toy(BaseModel):
    colour: Literal["red", "green"] = Field("red", description="a colour")
    size: int = Field(3, ge=1, le=10, description="a size")
    n_things: int = Field(2, ge=0)
    loud: bool = False
    maybe: Literal["a", "b"] | None = None


def test_choices_read_literal_fields():
    assert choices(Toy, "colour") == ("red", "green")
    assert choices(Toy, "maybe") == ("a", "b")
    assert choices(AttributionSettings, "corruption") == ("history", "target", "user")
    assert choices(GroupSettings, "threshold_rule") == ("share", "quantile", "absolute")
    with pytest.raises(TypeError):
        choices(Toy, "size")


def test_options_are_built_from_any_settings_class():
    parser = CliParser(prog="toy")
    options = SettingsOptions.add(parser, Toy, ["colour", "size", "n_things", "loud"], rename={"n_things": "--things"})
    help_text = parser.format_help()
    assert "{red,green}" in help_text and "a size (default 3)" in help_text and "--things" in help_text
    args = parser.parse_args(["--colour", "green", "--things", "4", "--loud"])
    assert options.build(args) == Toy(colour="green", size=3, n_things=4, loud=True)
    assert options.build(parser.parse_args([])) == Toy()
    for argv, flag in (
        (["--size", "0"], "--size"),
        (["--size", "x"], "--size"),
        (["--colour", "blue"], "--colour"),
        (["--things", "-1"], "--things"),
    ):
        with pytest.raises(CureError, match=flag):
            parser.parse_args(argv)


def test_validation_errors_name_the_flag_not_the_field():
    parser = CliParser(prog="toy")
    options = SettingsOptions.add(
        parser, GroupSettings, ["threshold_rule", "threshold", "null_draws"], rename={"null_draws": "--draws"}
    )
    with pytest.raises(CureError, match=r"--threshold: the quantile rule needs a threshold in \(0, 1\]"):
        options.build(parser.parse_args(["--threshold-rule", "quantile", "--threshold", "2"]))
    with pytest.raises(CureError, match="--draws"):
        options.build(parser.parse_args([]), null_draws=0)


@pytest.mark.parametrize(
    ("rule", "threshold", "ok"),
    [
        ("share", 0.8, True),
        ("share", 1.0, True),
        ("share", 0.0, False),
        ("quantile", 1.5, False),
        ("absolute", 0.0, True),
        ("absolute", 3.0, True),
        ("absolute", -0.1, False),
    ],
)
def test_group_threshold_fits_its_rule(rule, threshold, ok):
    if ok:
        assert GroupSettings(threshold_rule=rule, threshold=threshold).threshold == threshold
    else:
        with pytest.raises(ValueError, match="threshold"):
            GroupSettings(threshold_rule=rule, threshold=threshold)


def test_recipe_rejects_unknown_fields_and_indivisible_heads():
    with pytest.raises(CureError, match=r"n_layers: Extra inputs are not permitted.*valid fields: arch, n_layer"):
        recipe_from_json('{"n_layers": 7}')
    with pytest.raises(CureError, match="d_model 30 is not divisible by n_head 4"):
        recipe_from_json('{"d_model": 30}')
    assert recipe_from_json('{"n_layer": 2}') == Recipe(n_layer=2)


@pytest.mark.parametrize(
    ("ratio", "mean", "std", "beyond"),
    [(1.5, 1.0, 0.1, True), (1.1, 1.0, 0.1, False), (1.2, 1.0, 0.1, False), (1.21, 1.0, 0.1, True)],
)
def test_one_separability_verdict(ratio, mean, std, beyond):
    groups = ModuleGroups(
        table=None,
        separability={"separability": ratio, "spread_control_mean": mean, "spread_control_std": std},
        settings=GroupSettings(),
        warnings=[],
    )  # type: ignore[arg-type]
    assert groups.beyond_noise is beyond

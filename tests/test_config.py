from __future__ import annotations

import pytest
import yaml

from pruneofa.config import apply_overrides, dump_recipe, list_builtin_recipes, load_recipe, parse_recipe
from pruneofa.errors import RecipeError


def _minimal(**extra):
    raw = {"version": 1, "name": "t", "model": "m", "prune": {"sparsity": 0.5}}
    raw.update(extra)
    return raw


@pytest.mark.parametrize("name", sorted(list_builtin_recipes()))
def test_every_builtin_recipe_round_trips(name):
    recipe = load_recipe(name)
    text = dump_recipe(recipe)
    again = parse_recipe(yaml.safe_load(text))
    assert again == recipe
    assert dump_recipe(again) == text


def test_unknown_key_is_named_with_nearest_valid_key():
    raw = _minimal(prune={"sparsty": 0.5})
    with pytest.raises(RecipeError, match=r"unknown key 'prune.sparsty'; did you mean 'sparsity'\?"):
        parse_recipe(raw)


def test_unknown_top_level_stage_suggests_the_stage():
    raw = _minimal(pretrian={"steps": 10})
    with pytest.raises(RecipeError, match=r"unknown key 'pretrian'; did you mean 'pretrain'\?"):
        parse_recipe(raw)


def test_sparsity_out_of_range_is_rejected_with_the_value():
    with pytest.raises(RecipeError, match=r"'prune.sparsity'.*less than 1.*got 1.5"):
        parse_recipe(_minimal(prune={"sparsity": 1.5}))


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ({"begin_step": 50, "end_step": 50}, "must be < end_step"),
        ({"begin_step": 0, "end_step": 95, "frequency": 10}, "multiple of frequency"),
        ({"frequency": 0}, "greater than 0"),
        ({"initial_sparsity": 0.5, "final_sparsity": 0.2}, "initial_sparsity"),
    ],
)
def test_schedule_ranges(schedule, message):
    raw = {"version": 1, "name": "t", "model": "m", "pretrain": {"steps": 100, "schedule": schedule}}
    with pytest.raises(RecipeError, match=message):
        parse_recipe(raw)


def test_schedule_must_end_within_training():
    raw = {"version": 1, "name": "t", "model": "m", "pretrain": {"steps": 50, "schedule": {"end_step": 100}}}
    with pytest.raises(RecipeError, match="must be before the last step"):
        parse_recipe(raw)


def test_version_and_empty_recipe_errors():
    with pytest.raises(RecipeError, match="version 2 is not supported"):
        parse_recipe(_minimal(version=2))
    with pytest.raises(RecipeError, match="missing key 'version'"):
        parse_recipe({"name": "t", "model": "m", "prune": {}})
    with pytest.raises(RecipeError, match="has no stage"):
        parse_recipe({"version": 1, "name": "t", "model": "m"})


def test_overrides_parse_yaml_values_and_create_sections():
    raw = apply_overrides(_minimal(), ["prune.sparsity=0.75", "prune.masks.pattern=block1x4", "seed=7"])
    recipe = parse_recipe(raw)
    assert recipe.prune.sparsity == 0.75
    assert recipe.prune.masks.pattern == "block1x4"
    assert recipe.seed == 7


def test_bad_override_syntax():
    with pytest.raises(RecipeError, match="KEY=VALUE"):
        apply_overrides(_minimal(), ["prune.sparsity"])
    with pytest.raises(RecipeError, match="is a value, not a section"):
        apply_overrides(_minimal(), ["name.x=1"])


def test_yaml_tags_that_build_objects_are_refused(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("version: 1\nname: !!python/object/apply:os.system ['echo pwned']\nmodel: m\nprune: {}\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(path)


def test_missing_recipe_file_and_unknown_builtin():
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe("no/such/recipe.yaml")
    with pytest.raises(RecipeError, match="did you mean 'oneshot-90'"):
        load_recipe("oneshot-09")


def test_docs_recipe_reference_is_what_the_generator_writes_now():
    from pathlib import Path

    from pruneofa.config.reference import recipe_reference

    docs = Path(__file__).resolve().parents[1] / "docs" / "recipes.md"
    assert docs.read_text() == recipe_reference(), (
        "docs/recipes.md is stale: run `python -m pruneofa.config.reference docs/recipes.md`")
    for section in ("## Recipe", "## PretrainStage", "## GMPConfig", "## QATConfig", "## TaskConfig"):
        assert section + "\n" in docs.read_text()


def test_readme_links_resolve():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    links = re.findall(r"\]\(((?:docs|results)/[^)#]+)\)", (root / "README.md").read_text())
    assert len(links) >= 5 and [link for link in links if not (root / link).is_file()] == []


def test_every_recipe_stage_has_one_runner_in_the_explicit_stage_table():
    from pruneofa.config.schema import STAGE_ORDER
    from pruneofa.train.stages import STAGE_RUNNERS

    assert tuple(STAGE_RUNNERS) == STAGE_ORDER  # one table, in pipeline order, no registration by import

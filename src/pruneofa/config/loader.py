"""Load, override, validate and dump recipes.

YAML is read with `yaml.safe_load` only: no tags that build Python objects, nothing is evaluated.
Validation errors become one `RecipeError` whose first line names the key and, for a typo, the
nearest valid key.
"""

from __future__ import annotations

import difflib
import hashlib
from importlib import resources
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from pruneofa.config.schema import Recipe
from pruneofa.errors import RecipeError


def list_builtin_recipes() -> dict[str, str]:
    """Built-in recipe name -> its one-line description."""
    out: dict[str, str] = {}
    for entry in sorted(resources.files("pruneofa.recipes").iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".yaml"):
            raw = yaml.safe_load(entry.read_text(encoding="utf-8")) or {}
            out[entry.name[: -len(".yaml")]] = str(raw.get("description", "")).strip()
    return out


def read_recipe_source(name_or_path: str | Path) -> tuple[dict[str, Any], str]:
    """The raw mapping of a recipe file or a built-in recipe name, and where it came from."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise RecipeError(f"recipe file '{path}' does not exist: check the path, or list the built-in "
                              "recipes with `pruneofa recipes`")
        try:
            text, origin = path.read_text(encoding="utf-8"), str(path)
        except UnicodeDecodeError as exc:
            raise RecipeError(f"recipe file '{path}' is not valid UTF-8 ({exc.reason} at byte {exc.start}); "
                              "save it as UTF-8") from None
    else:
        builtin = resources.files("pruneofa.recipes") / f"{name_or_path}.yaml"
        if not builtin.is_file():
            names = list(list_builtin_recipes())
            hint = difflib.get_close_matches(str(name_or_path), names, n=1)
            if hint:
                raise RecipeError(f"no recipe file or built-in recipe named '{name_or_path}'; did you mean "
                                  f"'{hint[0]}'?")
            raise RecipeError(f"no recipe file or built-in recipe named '{name_or_path}'; pass a .yaml file or a "
                              f"built-in name ({', '.join(names)})")
        text, origin = builtin.read_text(encoding="utf-8"), f"builtin:{name_or_path}"
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RecipeError(f"recipe {origin} is not valid YAML: {_one_line(exc)}; fix the line it names") from None
    if not isinstance(raw, dict):
        raise RecipeError(f"recipe {origin} must be a YAML mapping, got {type(raw).__name__}; write it as "
                          "`key: value` lines (`pruneofa recipes quickstart` prints one)")
    return raw, origin


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides to a raw recipe mapping (values parsed as YAML scalars/lists)."""
    for item in overrides:
        key, sep, value_text = item.partition("=")
        if not sep or not key.strip():
            raise RecipeError(f"--set expects KEY=VALUE (e.g. pretrain.schedule.final_sparsity=0.85), got '{item}'")
        try:
            value = yaml.safe_load(value_text) if value_text.strip() else ""
        except yaml.YAMLError as exc:
            raise RecipeError(f"--set {key}: value '{value_text}' is not valid YAML: {_one_line(exc)}; quote it "
                              f"(e.g. --set '{key}=\"{value_text}\"')") from None
        node: dict[str, Any] = raw
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise RecipeError(f"--set {key}: '{part}' is a value, not a section; set '{part}' itself, or check the "
                                  "key path (`pruneofa recipes NAME` prints the recipe)")
            node = child
        node[parts[-1]] = value
    return raw


def parse_recipe(raw: dict[str, Any], origin: str = "recipe") -> Recipe:
    """Validate a raw mapping into a `Recipe`, or raise a readable `RecipeError`."""
    try:
        return Recipe.model_validate(raw)
    except ValidationError as exc:
        raise RecipeError(_describe(exc, origin)) from None


def load_recipe(name_or_path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read a recipe (file or built-in name), apply `--set` overrides, validate."""
    raw, origin = read_recipe_source(name_or_path)
    return parse_recipe(apply_overrides(raw, list(overrides or [])), origin)


def dump_recipe(recipe: Recipe) -> str:
    """The fully resolved recipe (defaults filled in) as YAML; loading it gives back an equal recipe."""
    return yaml.safe_dump(recipe.model_dump(mode="json", exclude_none=True), sort_keys=False)


def recipe_hash(recipe: Recipe) -> str:
    return hashlib.sha256(dump_recipe(recipe).encode()).hexdigest()[:16]


def _one_line(exc: Exception) -> str:
    """A parser's message (PyYAML's spans several lines, with a caret) as one line."""
    return " ".join(str(exc).split())


def _describe(exc: ValidationError, origin: str) -> str:
    problems = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            valid = _fields_at(Recipe, err["loc"][:-1])
            hint = difflib.get_close_matches(str(err["loc"][-1]), valid, n=1, cutoff=0.5)
            suggestion = f"; did you mean '{hint[0]}'?" if hint else f" (valid keys: {', '.join(valid)})"
            problems.append(f"unknown key '{loc}'{suggestion}")
        elif err["type"] == "missing":
            problems.append(f"missing key '{loc}'")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            where = f"'{loc}'" if loc else "recipe"
            shown = err.get("input")
            value = f" (got {shown!r})" if loc and not isinstance(shown, dict | list) else ""
            problems.append(f"{where}: {msg}{value}")
    head = f"invalid recipe {origin}: {problems[0]}"
    if len(problems) > 1:
        head += f" (and {len(problems) - 1} more: " + "; ".join(problems[1:]) + ")"
    if "did you mean" not in head:
        head += "; fix it in the recipe, or override it with --set KEY=VALUE"
    return head


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Names of the fields valid at `loc` inside `model` (walking nested models, lists and optionals)."""
    current: Any = model
    for part in loc:
        current = _unwrap_model(current)
        if current is None:
            return []
        if isinstance(part, str) and part in current.model_fields:
            current = current.model_fields[part].annotation
        # integer parts index lists/tuples: the element type is unwrapped by _unwrap_model
    current = _unwrap_model(current)
    return sorted(current.model_fields) if current is not None else []


def _unwrap_model(tp: Any) -> type[BaseModel] | None:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    if get_origin(tp) is not None or get_args(tp):
        for arg in get_args(tp):
            found = _unwrap_model(arg)
            if found is not None:
                return found
    return None

"""``load_task``: the one entry point the training stage calls to get a task's examples.

Every task name maps to a loader and the dataclass of options that loader accepts, in one explicit
table (:data:`LOADERS`); the generic ``csv:``/``jsonl:``/``hf:`` forms map by prefix. Options are
checked against that dataclass, so a typo in a recipe fails with a "did you mean" instead of being
ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pruneofa.tasks import derived, files, glue, qa
from pruneofa.tasks.base import (
    BUILTIN_SPECS,
    GENERIC_PREFIXES,
    TaskData,
    TaskError,
    TaskSpec,
    get_spec,
    parse_options,
    subsample,
)


@dataclass(frozen=True)
class NoOptions:
    """Tasks whose files fully define them (SQuAD) take no options."""


@dataclass(frozen=True)
class Loader:
    """How to load one built-in task: ``fn(spec, data_dir, seed, options)`` and its options type."""

    fn: Callable[[TaskSpec, str | Path | None, int, Any], TaskData]
    options: type


LOADERS: dict[str, Loader] = {
    "sst2": Loader(lambda spec, d, seed, o: glue.load_glue(spec, d, o), glue.GlueOptions),
    "mnli": Loader(lambda spec, d, seed, o: glue.load_glue(spec, d, o), glue.GlueOptions),
    "qnli": Loader(lambda spec, d, seed, o: glue.load_glue(spec, d, o), glue.GlueOptions),
    "qqp": Loader(lambda spec, d, seed, o: glue.load_glue(spec, d, o), glue.GlueOptions),
    "squad": Loader(lambda spec, d, seed, o: qa.load_squad(spec, d), NoOptions),
    "polarity": Loader(lambda spec, d, seed, o: derived.load_polarity_task(spec, seed, o), derived.PolarityOptions),
    "wiki-pairs": Loader(lambda spec, d, seed, o: derived.load_wiki_pairs_task(spec, seed, o),
                         derived.WikiPairsOptions),
    "wiki-qa": Loader(lambda spec, d, seed, o: derived.load_wiki_qa_task(spec, seed, o), derived.WikiQAOptions),
}
if set(LOADERS) != set(BUILTIN_SPECS):  # a programming error, caught by any import in the tests
    raise RuntimeError(f"built-in specs and loaders differ: {set(LOADERS) ^ set(BUILTIN_SPECS)}")


#: Built-in tasks read from the user's files in ``data_dir``; the others build their data themselves.
FILE_TASKS = ("sst2", "mnli", "qnli", "qqp", "squad")


def task_names() -> list[str]:
    """Built-in task names (the generic ``csv:PATH``, ``jsonl:PATH``, ``hf:NAME[:CONFIG]`` come on top)."""
    return list(BUILTIN_SPECS)


def load_task(
    name: str,
    data_dir: str | Path | None = None,
    *,
    seed: int = 13,
    max_train: int | None = None,
    max_eval: int | None = None,
    options: Mapping[str, Any] | None = None,
) -> TaskData:
    """Load a task's train and eval examples.

    Args:
        name: a built-in task (``sst2``, ``mnli``, ``qnli``, ``qqp``, ``squad``, ``polarity``,
            ``wiki-pairs``, ``wiki-qa``) or ``csv:PATH``, ``jsonl:PATH``, ``hf:NAME[:CONFIG]``.
        data_dir: folder of the GLUE TSV files or SQuAD JSON files (file-backed tasks only).
        seed: fixes the polarity split, the derived tasks, and the max_train/max_eval subsets.
        max_train, max_eval: cap each split with a seeded random subset (files are often sorted by
            label, so a plain head would be one-sided). Caps count examples, not QA windows.
        options: task-specific options (see the loader's options dataclass, e.g.
            :class:`pruneofa.tasks.files.FileOptions` for csv/jsonl columns); unknown keys raise.

    Returns:
        TaskData with ``train``, ``evals`` (one list per ``spec.eval_splits`` name), ``spec`` and
        ``info`` (provenance; ``info["derived"]`` is True for the derived demo tasks).
    """
    if name.startswith(GENERIC_PREFIXES):
        if data_dir is not None:
            raise TaskError(f"{name!r} carries its own location; data_dir is only for built-in file tasks: drop "
                            "task.data_dir")
        if name.startswith("hf:"):
            data = files.load_hf_task(name, parse_options(files.HFOptions, options, name))
        else:
            data = files.load_file_task(name, parse_options(files.FileOptions, options, name))
    else:
        spec = get_spec(name)
        loader = LOADERS[name]
        if data_dir is not None and name not in FILE_TASKS:
            raise TaskError(f"task {name!r} builds its own data from registry packages; data_dir is only for "
                            f"{', '.join(FILE_TASKS)}: drop task.data_dir (for your own files use csv:PATH or "
                            "jsonl:PATH)")
        data = loader.fn(spec, data_dir, seed, parse_options(loader.options, options, name))
    if not data.train:
        raise TaskError(f"task {name!r}: no training examples; check its train file")
    data.train = subsample(data.train, max_train, seed)
    data.evals = {split: subsample(ex, max_eval, seed + 1) for split, ex in data.evals.items()}
    data.info.update(seed=seed, max_train=max_train, max_eval=max_eval, spec=data.spec.to_dict())
    return data

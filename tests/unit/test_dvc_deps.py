"""dvc.yaml lists, for every stage, the package source its command imports, so a library
change re-runs the stages it affects instead of leaving them silently stale."""

from __future__ import annotations

import ast
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "src"


def module_file(name: str) -> Path | None:
    """The source file of pmatch module `name` (a module or a package's __init__), or None."""
    path = SOURCE.joinpath(*name.split("."))
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return None


def imported_pmatch_modules(name: str) -> set[str]:
    """The pmatch modules that module `name` imports anywhere in its body (functions included,
    since stages import their heavy libraries lazily)."""
    tree = ast.parse(module_file(name).read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from pmatch.features import lite` imports the submodule pmatch.features.lite.
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {module for module in found if module.startswith("pmatch") and module_file(module)}


def with_parent_packages(modules: set[str]) -> set[str]:
    """Importing pmatch.a.b runs pmatch/__init__.py and pmatch/a/__init__.py first."""
    packages = set()
    for module in modules:
        parts = module.split(".")
        packages.update(".".join(parts[:end]) for end in range(1, len(parts)))
    return modules | {package for package in packages if module_file(package)}


def import_closure(start: set[str]) -> set[str]:
    seen, frontier = set(), set(start)
    while frontier:
        module = frontier.pop()
        if module in seen:
            continue
        seen.add(module)
        frontier |= with_parent_packages(imported_pmatch_modules(module)) - seen
    return with_parent_packages(seen)


def has_code(path: Path) -> bool:
    """Whether a file does more than carry a docstring (an empty __init__ changes nothing)."""
    body = ast.parse(path.read_text(encoding="utf-8")).body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return bool(body)


def stage_source_files(command: str) -> set[Path]:
    """The package files a `pmatch <verb> ...` stage command imports."""
    words = shlex.split(command)
    if words[0] != "pmatch":
        raise ValueError(f"stage command {command!r} does not start with `pmatch`")
    modules = import_closure({"pmatch.cli", f"pmatch.stages.{words[1]}"})
    return {module_file(module) for module in modules if has_code(module_file(module))}


def covered(path: Path, deps: list[str]) -> bool:
    relative = path.relative_to(ROOT)
    return any(relative == Path(dep) or Path(dep) in relative.parents for dep in deps)


STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_list_every_module_its_command_imports(stage):
    definition = STAGES[stage]
    missing = sorted(
        str(path.relative_to(ROOT))
        for path in stage_source_files(definition["cmd"])
        if not covered(path, definition["deps"])
    )
    assert not missing, (
        f"dvc.yaml stage {stage!r} runs code it does not list under deps: {missing}; "
        "add them (or their folder) so changing them re-runs the stage"
    )


def test_the_import_walk_sees_lazy_imports():
    # pmatch.stages.train imports the training code inside run(); a walk that missed it
    # would pass every stage vacuously.
    files = stage_source_files("pmatch train --data d --out m")
    assert SOURCE / "pmatch" / "model" / "training.py" in files
    assert SOURCE / "pmatch" / "config.py" in files

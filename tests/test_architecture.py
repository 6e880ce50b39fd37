"""The package's shape is part of its design: the tree in docs/architecture.md is the tree of
the code, data flows one way between the stages, and only ``pipeline/`` touches Ray."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "raypipe"
DOC = ROOT / "docs" / "architecture.md"

#: Stages in data-flow order: a module may import its own stage and earlier ones only. The
#: store comes early because every later stage reads or writes through it; config, models and
#: the top-level leaves are shared by all.
STAGES = (
    "media",
    "faces",
    "store",
    "extractors",
    "classify",
    "finetune",
    "fusion",
    "recipes",
    "report",
    "pipeline",
)
SHARED = ("config", "models")


def _doc_tree() -> set[str]:
    text = DOC.read_text()
    block = text[text.index("## The package tree") :]
    block = block[block.index("```\n") + 4 :]
    block = block[: block.index("```")]
    paths: set[str] = set()
    stack: list[str] = []
    for line in block.splitlines()[1:]:  # below "raypipe/"
        indent = (len(line) - len(line.lstrip(" "))) // 2 - 1
        name = line.split()[0]
        stack = [*stack[:indent], name.rstrip("/")]
        paths.add("/".join(stack) + ("/" if name.endswith("/") else ""))
    return paths


def _code_tree() -> set[str]:
    paths = set()
    for path in PACKAGE.rglob("*.py"):
        if "__pycache__" in path.parts:
            continue
        relative = path.relative_to(PACKAGE)
        if path.name != "__init__.py":
            paths.add(relative.as_posix())
        for parent in relative.parents:
            if parent != Path("."):
                paths.add(parent.as_posix() + "/")
    return paths


def _module_level_imports(path: Path) -> list[str]:
    """Modules imported at module level (lazy imports inside functions are deliberate)."""
    tree = ast.parse(path.read_text())
    names = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return names


def _all_imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return names


def _component_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if len(p.relative_to(PACKAGE).parts) > 1)


def test_the_documented_tree_is_the_code() -> None:
    documented, actual = _doc_tree(), _code_tree()
    assert documented - actual == set(), "docs/architecture.md lists modules that do not exist"
    assert actual - documented == set(), "modules missing from docs/architecture.md's tree"


def test_few_modules_at_the_top_and_every_package_says_what_it_holds() -> None:
    assert len(list(PACKAGE.glob("*.py"))) <= 8
    for init in PACKAGE.rglob("__init__.py"):
        docstring = ast.get_docstring(ast.parse(init.read_text()))
        assert docstring and len(docstring) > 20, f"{init} has no docstring saying what it holds"


@pytest.mark.parametrize("path", _component_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_data_flows_one_way(path: Path) -> None:
    stage = path.relative_to(PACKAGE).parts[0]
    for module in _module_level_imports(path):
        match = re.match(r"raypipe\.(\w+)", module)
        if not match or match.group(1) not in STAGES:
            continue
        target = match.group(1)
        if stage in SHARED:
            pytest.fail(f"shared {stage}/ imports stage {target} at module level ({module})")
        if stage in STAGES:
            assert STAGES.index(target) <= STAGES.index(stage), (
                f"{stage}/ imports the later stage {module}"
            )


@pytest.mark.parametrize("path", _component_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_the_pipeline_touches_ray(path: Path) -> None:
    if path.relative_to(PACKAGE).parts[0] == "pipeline":
        return
    assert not [m for m in _all_imports(path) if m == "ray" or m.startswith("ray.")]


def test_the_checks_above_can_fail(tmp_path: Path) -> None:
    """The parser sees a lower stage importing a higher one and a module missing from a tree."""
    bad = tmp_path / "bad.py"
    bad.write_text("import ray\nfrom raypipe.report.writer import write_report\n")
    assert _module_level_imports(bad) == ["ray", "raypipe.report.writer"]
    assert "media/probe.py" in _code_tree() and "media/" in _code_tree()
    assert "fusion/methods/weighted.py" in _doc_tree()


#: Files the docs show as examples to create (docs/extending.md), not as parts of raypipe.
EXAMPLE_FILES = {
    "raypipe/extractors/audio/rms.py",
    "raypipe/classify/classifiers/prototype.py",
    "raypipe/fusion/methods/best_member.py",
}


def test_paths_named_in_the_docs_exist() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    missing = []
    for page in pages:
        for path in re.findall(r"raypipe/[\w/]+\.py", page.read_text()):
            if path not in EXAMPLE_FILES and not (ROOT / path).is_file():
                missing.append(f"{page.name}: {path}")
        for dotted in re.findall(r"\braypipe(?:\.\w+)+", page.read_text()):
            parts = dotted.split(".")
            # a module, a package, or a name defined in a module (not in a package: a stale
            # submodule of an existing package must not pass)
            whole = ROOT / Path(*parts)
            prefixes = [ROOT / Path(*parts[:n]) for n in range(len(parts) - 1, 1, -1)]
            known = whole.with_suffix(".py").is_file() or whole.is_dir()
            inside = any(c.with_suffix(".py").is_file() for c in prefixes)
            package = ROOT / Path(*parts[:-1]) / "__init__.py"
            exported = package.is_file() and parts[-1] in package.read_text()
            if not (known or inside or exported):
                missing.append(f"{page.name}: {dotted}")
    examples = {p.replace("/", ".").removesuffix(".py") for p in EXAMPLE_FILES}
    missing = [m for m in missing if not any(e in m for e in examples)]
    assert missing == []

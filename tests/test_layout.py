"""The package's layout: modules import downwards only (no import cycles, lazy imports included),
entry points sit on top, and each concept lives in the folder named after it."""

import ast
import shutil
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "movietitles"
ENTRY_POINTS = {"movietitles.train", "movietitles.evaluate", "movietitles.generate", "movietitles.export",
                "movietitles.predict", "movietitles.data.__main__", "movietitles.features.__main__"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Each movietitles module -> the movietitles modules it imports anywhere in its body (lazy imports too).
    `from movietitles.pkg import mod` counts as an import of `movietitles.pkg.mod` when that is a module."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                submodules = {f"{node.module}.{alias.name}" for alias in node.names} & set(modules)
                targets |= submodules or {node.module}
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_import_graph_has_no_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_graph_walker_sees_cycles_and_lazy_imports():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    # A lazy import inside a function is an edge, and so is `from package import module`.
    graph = import_graph()
    assert "movietitles.evaluation.generator_report" in graph["movietitles.evaluate"]
    assert "movietitles.evaluation.baselines" in graph["movietitles.evaluate"]


def test_entry_points_sit_on_top():
    graph = import_graph()
    importers = {name: sorted(entry & ENTRY_POINTS) for name, entry in graph.items() if entry & ENTRY_POINTS}
    assert importers == {}, f"modules importing an entry point: {importers}"


def reachable(graph: dict[str, set[str]], start: str) -> dict[str, list[str]]:
    """Every module `start` imports, directly or through others: module -> one import chain that reaches it."""
    chains, todo = {start: [start]}, [start]
    while todo:
        node = todo.pop()
        for target in sorted(graph[node]):
            if target not in chains:
                chains[target] = chains[node] + [target]
                todo.append(target)
    del chains[start]
    return chains


def is_training(module: str) -> bool:
    return module in ("movietitles.train", "movietitles.experiments") or module.startswith("movietitles.training")


READ_ONLY = ("movietitles.evaluation", "movietitles.serving", "movietitles.predict", "movietitles.generate",
             "movietitles.export", "movietitles.features", "movietitles.data", "movietitles.models",
             "movietitles.generator", "movietitles.encoders")


def test_the_reachability_walker_follows_chains():
    assert reachable({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"a"}}, "a") == {"b": ["a", "b"], "c": ["a", "b", "c"]}


@pytest.mark.parametrize("package", READ_ONLY)
def test_evaluation_serving_and_everything_below_training_never_reach_training(package):
    """Transitively: `evaluation/x -> y -> training/z` counts. Only entry points (train, evaluate's variant
    comparisons through movietitles.experiments) may train."""
    graph = import_graph()
    reached = {f"{module}: " + " -> ".join(chain)
               for module in graph if (module == package or module.startswith(package + "."))
               and module not in ENTRY_POINTS
               for target, chain in reachable(graph, module).items() if is_training(target)}
    assert sorted(reached) == [], "\n".join(sorted(reached))


def test_each_concept_lives_in_its_folder():
    graph = import_graph()
    assert {"movietitles.serving.genre", "movietitles.serving.generator"} <= set(graph)
    assert not (PACKAGE / "serving.py").exists() and not (PACKAGE / "serving_generator.py").exists()
    assert "movietitles.generator.sampling" in graph          # sampling beside the decoder
    assert "movietitles.artefacts" in graph                   # what a config names, and making it (ensure_*)


def test_no_module_calls_a_private_method_of_the_encoders():
    """Serving embeds titles in-graph through the text encoder's public `encode_token_ids`."""
    private = {node.name for path in (PACKAGE / "encoders").glob("*.py")
               for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
               if isinstance(node, ast.FunctionDef) and node.name.startswith("_") and not node.name.startswith("__")}
    assert "_trim" in private  # the walker finds them
    calls = [f"{path.relative_to(PACKAGE)}:{node.lineno} .{node.attr}"
             for path in PACKAGE.rglob("*.py") if "encoders" not in path.parts
             for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
             if isinstance(node, ast.Attribute) and node.attr in private
             and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))]
    assert calls == []


def calls(path: Path, attribute: str) -> list[ast.Call]:
    return [node for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == attribute]


def places(predicate) -> list[str]:
    return sorted(str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py") if predicate(path))


def test_run_folders_are_named_by_one_config_hash_helper():
    def hashes_yaml(path):
        return any(inner.func.attr == "safe_dump" for call in calls(path, "sha256") for inner in ast.walk(call)
                   if isinstance(inner, ast.Call) and isinstance(inner.func, ast.Attribute))

    assert places(hashes_yaml) == ["naming.py"]


def test_every_name_is_derived_in_the_naming_module():
    """One naming layer: no module but movietitles.naming hashes a config into a name."""
    def uses(path, name):
        return any(isinstance(node, ast.Name) and node.id == name for node in ast.walk(ast.parse(path.read_text())))

    assert places(lambda path: uses(path, "config_hash")) == ["naming.py"]
    assert places(lambda path: uses(path, "identity")) == ["naming.py"]


def test_markdown_tables_are_written_by_one_helper():
    def writes_separator_row(path):
        return any(isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.strip("|\n") == "---"
                   or isinstance(node, ast.Constant) and isinstance(node.value, str) and "|---|" in node.value
                   for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))))

    assert places(writes_separator_row) == ["markdown.py"]


def test_atomic_saves_go_through_one_helper_for_files_and_one_for_folders():
    assert places(lambda path: calls(path, "mkdtemp") or calls(path, "mkstemp")) == ["io.py"]


def test_split_names_are_defined_once():
    def names_splits(path):
        return any(isinstance(node, ast.Tuple) and [getattr(e, "value", None) for e in node.elts]
                   == ["train", "validation", "test"] for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))))

    assert places(names_splits) == ["data/dataset.py"]


def test_the_config_hash_names_existing_runs_as_before():
    import hashlib

    import yaml

    from movietitles.config import load_config
    from movietitles.naming import config_hash

    config = load_config()
    assert config_hash(config) == hashlib.sha256(yaml.safe_dump(config, sort_keys=True).encode()).hexdigest()[:10]


# The settings layer owns the configuration dictionary: it loads it (config), types and checks parts of it
# (settings), names what it makes (naming) and finds those artefacts (artefacts). Entry points and training/ may
# hold it too; every module below receives typed settings or one encoder's section.
SETTINGS_LAYER = {"movietitles.config", "movietitles.settings", "movietitles.naming", "movietitles.artefacts"}


def may_hold_the_config(module: str) -> bool:
    return module in SETTINGS_LAYER or module in ENTRY_POINTS or is_training(module)


def test_the_config_follower_sees_a_lower_module_receive_the_config(tiny_config):
    from config_reach import config_reach

    from movietitles.generator.runs import run_directory

    with config_reach() as reached:
        run_directory(tiny_config)
    assert "run_directory" in reached["movietitles.generator.runs"]
    assert not may_hold_the_config("movietitles.generator.runs")


def test_train_fusion_hands_no_module_below_training_the_config(tiny_config, tmp_path):
    """Followed through a real `python -m movietitles.train --task fusion` (in this process), from the command line
    to the saved model: which functions receive the whole configuration dictionary, or any copy of it."""
    from config_reach import config_reach

    from movietitles.config import with_overrides, write_config
    from movietitles.train import main

    write_config(with_overrides(tiny_config, {"genre.runs_dir": str(tmp_path / "runs")}), tmp_path)
    with config_reach() as reached:
        assert main(["--task", "fusion", "--config", str(tmp_path / "config.yaml")]) == 0
    assert list((tmp_path / "runs").glob("fusion-*/model.keras"))  # followed to the saved model
    assert {"train_genre_model", "train_one_model"} <= reached["movietitles.training.genre"]
    below = {module: sorted(functions) for module, functions in reached.items() if not may_hold_the_config(module)}
    assert below == {}, f"modules below training/ that receive the configuration dictionary: {below}"


def test_evaluate_hands_no_module_below_evaluate_the_config(tiny_config, trained, tmp_path):
    """Followed through a real `python -m movietitles.evaluate` (in this process) on the trained genre models:
    computed, then written (report, metrics, plots, HTML, TensorBoard)."""
    from config_reach import config_reach

    from movietitles.config import with_overrides, write_config
    from movietitles.evaluate import main

    runs = tmp_path / "runs"  # the trained runs, copied: this evaluation writes beside them, not beside the originals
    for run_dir in trained.values():
        shutil.copytree(run_dir, runs / run_dir.name)
    write_config(with_overrides(tiny_config, {"evaluation.bootstrap_resamples": 99, "genre.runs_dir": str(runs)}),
                 tmp_path)
    with config_reach() as reached:
        main(["--config", str(tmp_path / "config.yaml")])
    assert {"compute_genre_evaluation", "evaluate_genres"} <= reached["movietitles.evaluate"]
    below = {module: sorted(functions) for module, functions in reached.items() if not may_hold_the_config(module)}
    assert below == {}, f"modules below evaluate that receive the configuration dictionary: {below}"

"""The library reads as one house: its import graph has no cycle, imports inside functions
are only for optional dependencies, and nothing outside the algorithm registry branches on an
algorithm's name."""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "wtl_tf")


def _modules():
    found = {}
    for directory, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                found[module[:-len(".__init__")] if module.endswith(".__init__") else module] = path
    return found


def _algorithm_names():
    tree = ast.parse(open(os.path.join(PACKAGE, "algorithms.py")).read())
    return {node.args[0].value for node in ast.walk(tree)
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Algorithm"
            and node.args and isinstance(node.args[0], ast.Constant)}


def test_the_algorithm_names_are_found():
    assert {"maml", "sparse_maml", "la_maml", "sparse_continual_maml"} <= _algorithm_names()


def _strings(node):
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return set().union(*(_strings(e) for e in node.elts)) if node.elts else set()
    return set()


def test_no_module_but_the_registry_branches_on_an_algorithm_name():
    names = _algorithm_names()
    found = []
    for module, path in _modules().items():
        if module == "wtl_tf.algorithms":
            continue
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.Compare):
                operands = [node.left, *node.comparators]
                compared = set().union(*(_strings(n) for n in operands))
                # a name compared with what a run is (not, say, --mask_init=meta_sgd)
                about_the_run = any(word in ast.unparse(n) for n in operands
                                    for word in ("algorithm", "variant", "learner"))
                if compared & names and about_the_run:
                    found.append(f"{module}:{node.lineno} compares with {sorted(compared & names)}")
            elif isinstance(node, ast.Dict):
                keyed = [k.value for k in node.keys if isinstance(k, ast.Constant)
                         and k.value in names]
                if len(keyed) > 1:
                    found.append(f"{module}:{node.lineno} a table keyed by {keyed}")
            elif isinstance(node, ast.match_case):
                if _strings(getattr(node.pattern, "value", None)) & names:
                    found.append(f"{module}:{node.lineno} matches an algorithm name")
    assert not found, found


# Imports a function may make: an optional dependency (the `plots` extra), or the one import
# whose point is to happen late (wtl_tf.cli.quiet imports TensorFlow with stderr captured).
LATE_IMPORTS = {"matplotlib": "the plots extra", "tensorflow": "wtl_tf.cli.quiet only"}


def _imports(path, module):
    """[(imported module, inside a function?)] of one file, relative imports resolved."""
    tree = ast.parse(open(path).read())
    local = {id(sub) for node in ast.walk(tree)
             if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
             for sub in ast.walk(node) if isinstance(sub, (ast.Import, ast.ImportFrom))}
    package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        found += [(name, id(node) in local) for name in names]
    return found


def test_the_import_graph_has_no_cycle():
    modules = _modules()
    graph = {m: {name for name, _ in _imports(path, m) if name in modules and name != m}
             for m, path in modules.items()}
    state, cycles = {}, []

    def visit(m, trail):
        state[m] = "open"
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                cycles.append(" -> ".join(trail[trail.index(n):] + [n]))
            elif n not in state:
                visit(n, trail + [n])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, cycles[:5]


def test_functions_import_only_optional_dependencies():
    late = []
    for module, path in _modules().items():
        for name, inside_a_function in _imports(path, module):
            top = name.split(".")[0]
            allowed = top in LATE_IMPORTS and (top != "tensorflow" or module == "wtl_tf.cli.quiet")
            if inside_a_function and not allowed:
                late.append(f"{module} imports {name} inside a function")
    assert not late, late


def test_no_module_over_400_lines_and_no_class_over_250():
    long_modules, long_classes = [], []
    for module, path in _modules().items():
        text = open(path).read()
        if text.count("\n") > 400:
            long_modules.append(f"{module}: {text.count(chr(10))} lines")
        long_classes += [f"{module}.{node.name}: {node.end_lineno - node.lineno + 1} lines"
                         for node in ast.walk(ast.parse(text)) if isinstance(node, ast.ClassDef)
                         and node.end_lineno - node.lineno + 1 > 250]
    assert not long_modules and not long_classes, long_modules + long_classes


def test_every_tape_is_the_inner_loops():
    """Every gradient, the continual learners' too, is taken in wtl_tf.inner_loop
    (value_and_gradient: loss scaling and unconnected sources handled in one place): no
    other module opens a tf.GradientTape."""
    found = []
    for module, path in _modules().items():
        if module == "wtl_tf.inner_loop":
            continue
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "GradientTape":
                found.append(f"{module}:{node.lineno}")
    assert not found, f"tapes of their own in {found}"


def test_no_subprocess_runs_python_between_fork_and_exec():
    """The suite and the library start processes from threaded processes (TensorFlow's pools,
    the background scenarios): a preexec_fn runs Python in the forked child before exec, where
    a lock another thread held at the fork can hang it forever. Nice with the `nice` command."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    found = []
    for folder in ("wtl_tf", "tests", "benchmarks", "experiments"):
        for directory, _, files in os.walk(os.path.join(root, folder)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(directory, name)
                    for node in ast.walk(ast.parse(open(path).read())):
                        if isinstance(node, ast.keyword) and node.arg == "preexec_fn":
                            found.append(f"{os.path.relpath(path, root)}:{node.value.lineno}")
    assert not found, f"preexec_fn in {found}"


def test_generator_datasets_end_by_their_count():
    """A from_generator dataset that fit iterates must end by count (wtl_tf.data.generated):
    a request past its end that reaches the generator stalls fit's teardown ~10 s."""
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "wtl_tf")
    found = []
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            if name.endswith(".py") and path != os.path.join(root, "data", "generated.py"):
                for node in ast.walk(ast.parse(open(path).read())):
                    if isinstance(node, ast.Attribute) and node.attr == "from_generator":
                        found.append(f"{os.path.relpath(path, root)}:{node.lineno}")
    assert not found, f"from_generator outside wtl_tf.data.generated: {found}"

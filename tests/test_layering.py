"""The package's layering (docs/architecture.md): imports run one way, and no module reads another's private names.

Every module of `ride_tf` has a layer; a module may import only modules of
lower layers, with no exception, so the graph of imports between files
(function-local imports included) has no cycle, which is checked on its own
too.  Private names (a single leading underscore) are read only through
`self` / `cls` / `super()`: never `module._name` or `other_object._name`.
"""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "ride_tf")

# Bottom to top; the same list is the table of docs/architecture.md.
LAYERS = [
    ["checks", "defaults", "lazy_imports", "runtime", "codec.rans", "codec.format"],
    ["io", "data", "nn", "training", "codec"],
    ["data.files", "data.leaves", "data.synthetic", "codec.lookup", "codec.palette"],
    ["data.bsds", "data.van_hateren"],
    ["geometry"],
    # the codec's runtime: no TensorFlow
    ["codec.integer"],
    ["codec.model_file", "codec.native"],
    ["codec.coding"],
    ["codec.planes"],
    ["codec.structure", "codec.adapt"],
    ["codec.registry"],
    # the float model
    ["quantization"],
    ["data.streaming", "neighbourhoods", "preprocessing"],
    ["nn.distributions", "nn.whitening", "nn.spatial_lstm"],
    ["nn.mcgsm"],
    ["evaluation", "codec.derive", "codec.graph"],
    ["wavefront"],
    ["discrete", "codec.compiled"],
    ["wavefront.sampling", "training.finetune", "training.patches", "training.schedule"],
    ["wavefront.inpainting", "training.checkpoint"],
    ["model"],
    ["ensemble", "training.callbacks", "pretrained", "codec.api"],
    ["training.recipe", "export"],
    ["cli.common"],
    ["cli.batch"],
    ["cli.train", "cli.evaluate", "cli.sample", "cli.inpaint", "cli.size", "cli.compress", "cli.decompress",
     "cli.export"],
    ["cli", ""],
    ["__main__", "pipelines"],
]
# The codec's runtime: modules that must import no TensorFlow, Keras or TFP (checked in a process that blocks them,
# tests/test_codec_runtime.py), so that compress, decompress and exact sizes start at once.
RUNTIME = ["checks", "defaults", "lazy_imports", "runtime", "io", "codec", "data", "data.files", "geometry", "codec.rans",
           "codec.format", "codec.lookup", "codec.palette", "codec.integer", "codec.model_file", "codec.native",
           "codec.coding", "codec.planes", "codec.structure", "codec.adapt", "codec.registry", "codec.api"]


def module_names():
    names = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, PACKAGE)[:-3].replace(os.sep, ".")
                dotted = dotted[:-len(".__init__")] if dotted.endswith(".__init__") else dotted
                names["" if dotted == "__init__" else dotted] = path
    return names


def imported_modules(path, known):
    """The ride_tf modules (names relative to the package) that `path` imports, anywhere in the file."""
    found = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from A import B`: the module A.B if there is one, else the module A.
            submodules = [f"{node.module}.{alias.name}" for alias in node.names]
            known_submodules = [t for t in submodules if t[len("ride_tf."):] in known]
            targets = known_submodules + ([node.module] if len(known_submodules) < len(submodules) else [])
        else:
            continue
        for target in targets:
            if target == "ride_tf" or target.startswith("ride_tf."):
                relative = target[len("ride_tf."):] if target != "ride_tf" else ""
                if relative in known:
                    found.add(relative)
    return found


def test_every_module_has_a_layer():
    placed = [name for layer in LAYERS for name in layer]
    assert sorted(placed) == sorted(module_names()), "update LAYERS (and docs/architecture.md)"
    assert len(placed) == len(set(placed))


def test_imports_run_downward_only():
    names = module_names()
    layer_of = {name: k for k, layer in enumerate(LAYERS) for name in layer}
    upward = []
    for name, path in names.items():
        for target in imported_modules(path, names):
            if target != name and not name.startswith(target + ".") and layer_of[target] >= layer_of[name]:
                upward.append(f"{name} (layer {layer_of[name]}) imports {target} (layer {layer_of[target]})")
    assert upward == []


def import_cycles(graph):
    """The strongly connected components of more than one file in `graph` {file: set of files it imports}
    (Tarjan's algorithm), each a sorted list; a file importing itself counts too."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_no_import_cycle_between_files():
    """The graph of imports between the package's files, function-local imports included, has no cycle.  A
    package's __init__ counts as the file that `import ride_tf.X` runs; a file importing its own package
    (`from ride_tf.codec import lookup` in ride_tf/codec/native.py) reaches the submodule, not a cycle."""
    names = module_names()
    graph = {name: {t for t in imported_modules(path, names) if t != name and not name.startswith(t + ".")}
             for name, path in names.items()}
    assert import_cycles(graph) == []


def test_the_cycle_finder_finds_cycles():
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles({"a": {"a"}}) == [["a"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def private_reads(path):
    """`x._name` where x is not self / cls / super(): reads of another object's or module's private names."""
    found = []
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            value = node.value
            if isinstance(value, ast.Name) and value.id in ("self", "cls"):
                continue
            if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "super":
                continue
            found.append(f"{os.path.relpath(path, ROOT)}:{node.lineno}: {ast.unparse(node)}")
    return found


@pytest.mark.parametrize("folder", ["ride_tf", "examples", "benchmarks", "export"])
def test_no_module_reads_another_modules_private_names(folder):
    offenders = []
    for base, _, files in os.walk(os.path.join(ROOT, folder)):
        for name in files:
            if name.endswith(".py"):
                offenders += private_reads(os.path.join(base, name))
    assert offenders == []


def test_the_checker_finds_what_it_looks_for(tmp_path):
    """The two checks fail on the patterns they forbid (an independent example file)."""
    source = tmp_path / "bad.py"
    source.write_text("from ride_tf import model\nimport ride_tf.cli\nx = model._graph\ny = self._fine\n")
    assert private_reads(str(source)) == [f"{os.path.relpath(str(source), ROOT)}:3: model._graph"]
    assert imported_modules(str(source), module_names()) == {"model", "cli"}

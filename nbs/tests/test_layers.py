"""The package's module-level imports form layers without a cycle: every import of a project module points to a
lower layer (or the same layer, for the three stages). Imports inside functions are allowed only for heavy
optional dependencies, never for project modules."""
import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / 'dbd_nb'
# bottom to top; a module may import project modules of a lower layer only (stage3 may also use stage2's ranking)
LAYERS = {'config': 0, 'dist': 0, 'store': 1, 'data': 2, 'models': 2, 'augment': 3, 'attacks': 3, 'adaptive': 3.5, 'train': 4,
          'stage1': 5, 'stage2': 5, 'defenses': 5, 'ablations': 5.5, 'stage3': 6, 'pipeline': 7, 'launch': 8, 'report': 9, 'bench': 9, 'revisit': 9,
          'runner': 10, 'gpu_check': 10}
SKIP = {'__init__', '_modidx'}


def project_imports(path: Path):
    "(module-level project imports, project imports inside functions) of one source file."
    tree = ast.parse(path.read_text())
    top, inner = set(), set()
    def names(node):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ''
            if node.level == 1: return {mod.split('.')[0]} if mod else {a.name for a in node.names}
            if mod.startswith('dbd_nb'): return {mod.split('.')[1]} if '.' in mod else {a.name for a in node.names}
        if isinstance(node, ast.Import):
            return {a.name.split('.')[1] for a in node.names if a.name.startswith('dbd_nb.')}
        return set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)): top |= names(node)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for sub in ast.walk(node):
                if isinstance(sub, (ast.Import, ast.ImportFrom)): inner |= names(sub)
    return top, inner


def modules():
    return sorted(p.stem for p in PKG.glob('*.py') if p.stem not in SKIP)


def test_every_module_has_a_layer():
    assert set(modules()) == set(LAYERS), set(modules()) ^ set(LAYERS)


def test_imports_point_down_and_none_hide_in_functions():
    bad = []
    for m in modules():
        top, inner = project_imports(PKG / f'{m}.py')
        for dep in top - {m}:
            ok = LAYERS[dep] < LAYERS[m]
            if not ok: bad.append(f'{m} (layer {LAYERS[m]}) imports {dep} (layer {LAYERS[dep]})')
        for dep in inner: bad.append(f'{m} imports {dep} inside a function')
    assert not bad, '\n'.join(bad)


def test_no_cycle():
    graph = {m: project_imports(PKG / f'{m}.py')[0] - {m} for m in modules()}
    seen, stack = set(), []
    def visit(m):
        if m in stack: raise AssertionError('import cycle: ' + ' -> '.join(stack[stack.index(m):] + [m]))
        if m in seen: return
        stack.append(m)
        for d in graph[m]: visit(d)
        stack.pop(); seen.add(m)
    for m in graph: visit(m)


def test_the_checker_catches_an_upward_import(tmp_path):
    "A planted upward import is found (the test above can fail)."
    p = tmp_path / 'data.py'; p.write_text('from dbd_nb.pipeline import run_step\ndef f():\n    from .train import predict\n')
    top, inner = project_imports(p)
    assert top == {'pipeline'} and inner == {'train'} and LAYERS['pipeline'] > LAYERS['data']

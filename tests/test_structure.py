"""The package's shape: each module's imports follow the notebook order (no circle, nothing from a later chapter), and the
library never imports the test miniatures (`tiny`). Read from the exported source, function bodies included."""
import ast, re
from pathlib import Path
import pytest

PKG = Path(__file__).resolve().parents[1]/'hybrid_retrieval'


def chapter(path:Path)->tuple[int,str]:
    "(number, letter) of the notebook a module is exported from, e.g. (8, 'a') for 08a_toy_training"
    m = re.search(r'File to edit: \.\./nbs/(\d+)([a-z]?)_', path.read_text())
    assert m, f'{path.name} names no notebook'
    return int(m.group(1)), m.group(2)


MODULES = {p.stem: chapter(p) for p in sorted(PKG.glob('*.py')) if not p.name.startswith('_')}


def package_imports(path:Path)->set[str]:
    "Modules of this package that `path` imports anywhere (relative, absolute or by a 'hybrid_retrieval.x' string)"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module: found.add(node.module.split('.')[0])
            elif node.level == 1 or node.module == 'hybrid_retrieval': found.update(a.name for a in node.names)
            elif node.module and node.module.startswith('hybrid_retrieval.'): found.add(node.module.split('.')[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split('.')[1] for a in node.names if a.name.startswith('hybrid_retrieval.'))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.update(re.findall(r'^hybrid_retrieval\.(\w+):\w+$', node.value))
    return found & set(MODULES)


IMPORTS = {name: package_imports(PKG/f'{name}.py') for name in MODULES}


def test_every_numbered_notebook_exports_the_module_it_names():
    "The chapter numbers the checks below compare come from the notebooks themselves"
    exported = {}
    for nb in (PKG.parent/'nbs').glob('[0-9]*.ipynb'):
        m = re.search(r'#\|\s*default_exp\s+(\w+)', nb.read_text())
        if m: exported[m.group(1)] = chapter_of(nb.name)
    assert exported == MODULES, (exported, MODULES)


def chapter_of(name:str)->tuple[int,str]:
    m = re.match(r'(\d+)([a-z]?)_', name)
    return int(m.group(1)), m.group(2)


@pytest.mark.parametrize('name', sorted(MODULES))
def test_no_module_imports_a_later_chapter(name):
    later = {m: MODULES[m] for m in IMPORTS[name] if MODULES[m] > MODULES[name]}
    assert not later, f'{name} (notebook {MODULES[name]}) imports later modules {later}'


@pytest.mark.parametrize('name', sorted(set(MODULES) - {'tiny'}))
def test_the_library_never_imports_the_test_miniatures(name):
    assert 'tiny' not in IMPORTS[name]


def test_no_circle():
    state = {}
    def visit(m, path):
        if state.get(m) == 'done': return
        assert state.get(m) != 'open', 'import circle: ' + ' -> '.join(path + [m])
        state[m] = 'open'
        for n in IMPORTS[m]: visit(n, path + [m])
        state[m] = 'done'
    for m in MODULES: visit(m, [])


def test_the_checker_sees_what_it_must(tmp_path):
    "The import reader is not blind: it finds each form of import the package could use"
    src = tmp_path/'x.py'
    src.write_text("from .core import a\nfrom . import toy\nimport hybrid_retrieval.config\n"
                   "def f():\n    from hybrid_retrieval.index import b\n    return 'hybrid_retrieval.cli:main'\n")
    assert package_imports(src) == {'core', 'toy', 'config', 'index', 'cli'}


def test_functions_stay_short():
    long = [f'{p.stem}.{n.name} ({n.end_lineno - n.lineno + 1} lines)' for p in PKG.glob('*.py') if p.name != '_modidx.py'
            for n in ast.walk(ast.parse(p.read_text())) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.end_lineno - n.lineno + 1 > 40]
    assert not long, long


def test_lines_stay_within_120_characters():
    "Except the `__all__` list nbdev writes itself: it wraps the names at 120 columns, then puts `__all__ = ` in front"
    long = [f'{p.name}:{n}' for p in PKG.glob('*.py') if p.name != '_modidx.py'
            for n, line in enumerate(p.read_text().splitlines(), 1) if len(line) > 120 and not line.startswith('__all__ = [')]
    assert not long, long


def test_notebook_cells_stay_small():
    import json, statistics
    sizes = [len(''.join(c['source']).strip().splitlines()) for nb in (PKG.parent/'nbs').glob('[0-9]*.ipynb')
             for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'code' and ''.join(c['source']).strip()]
    assert statistics.median(sizes) <= 5, statistics.median(sizes)


def _targets(node)->list:
    "The attribute and name targets an assignment writes"
    ts = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
    return [e for t in ts for e in (t.elts if isinstance(t, ast.Tuple) else [t])]


def private_crossings(path:Path)->list[str]:
    "Where `path` imports another module's private name, or writes a private attribute its own classes do not define"
    out, tree = [], ast.parse(path.read_text())
    nodes = list(ast.walk(tree))
    own = {t.attr for n in nodes for t in _targets(n)                     # private attributes its classes set on self
           if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == 'self'}
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or '').startswith('hybrid_retrieval')):
            out += [f'{path.stem}:{node.lineno} imports {a.name}' for a in node.names
                    if a.name.startswith('_') and not a.name.startswith('__')]
        for t in _targets(node):
            if isinstance(t, ast.Attribute) and t.attr.startswith('_') and not t.attr.startswith('__') and t.attr not in own:
                out.append(f'{path.stem}:{t.lineno} writes {ast.unparse(t)}')
    return out


def test_no_module_reaches_into_another():
    "No `from .x import _y`, and no assignment to another object's private attribute"
    found = [c for p in sorted(PKG.glob('*.py')) if p.name != '_modidx.py' for c in private_crossings(p)]
    assert not found, found


def test_the_crossing_checker_sees_them(tmp_path):
    src = tmp_path/'x.py'
    src.write_text("from .data import _add_row\nfrom . import __version__\nclass A:\n    def __init__(self): self._mine = 1\n"
                   "def f(a, index):\n    a._mine = 2\n    index._pos = {}\n")
    assert private_crossings(src) == ['x:1 imports _add_row', 'x:7 writes index._pos']


def test_modules_stay_short():
    "One module per job: none over 450 lines (nbdev's own `_modidx` aside)"
    long = {p.name: n for p in PKG.glob('*.py') if p.name != '_modidx.py' and (n := len(p.read_text().splitlines())) > 450}
    assert not long, long

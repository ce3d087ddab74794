"""Every notebook in `nbs/` as a test: `nbdev-test`, in a form `coverage run` can measure (`coverage run tests/notebooks.py`;
it takes `nbdev-test`'s flags).

In nbdev a chapter's tests run against the cells that define its functions, not against the module `nbdev-export` writes
from them, so coverage.py would credit a module only with what *later* chapters use. Here each exported cell is compiled
under the name and line numbers its code has in the module (the export markers `# %% ../nbs/...` say where), so the
lines a notebook's tests run are counted where they live. Cells that are not exported (examples, tests) and the import
cells (which nbdev rewrites to relative imports) run as before.

After a notebook has run, each cell's fresh output is compared with the one stored in the notebook
(`stored_outputs.py` says what is checked); a notebook whose stored outputs are missing, stale or hold this machine's
paths fails, each problem in one line. With `--save` the fresh outputs are written into the notebooks instead (then run
`nbdev-clean`); machine paths still fail."""
import ast, builtins, copy, logging, os, sys
from pathlib import Path
from IPython.core.compilerop import CachingCompiler
from execnb.shell import CaptureShell
import nbdev.test
from nbdev.test import nbdev_test
from stored_outputs import cell_problems, unseen

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT/'hybrid_retrieval'
os.environ.setdefault('COVERAGE_FILE', str(ROOT/'.coverage'))   # workers run in nbs/: keep their data with the rest

def _code(lines:list[str])->tuple[str,int]:
    "The code of a block of lines without leading directives and blank lines, and how many lines were dropped"
    k = 0
    while k < len(lines) and (not lines[k].strip() or lines[k].lstrip().startswith('#|')): k += 1
    return '\n'.join(lines[k:]).strip(), k

def exported_cells()->dict[str,tuple[str,int]]:
    "The code of every exported cell -> (its module's file, the line its code starts on)"
    out = {}
    for mod in sorted(PKG.glob('*.py')):
        lines = mod.read_text().splitlines()
        marks = [n for n,l in enumerate(lines) if l.startswith('# %% ')] + [len(lines)]
        for a,b in zip(marks, marks[1:]):
            code, k = _code(lines[a+1:b])
            if code: out[code] = (str(mod), a + 2 + k)
    return out

CELLS = exported_cells()
_cache, _parse = CachingCompiler.cache, CachingCompiler.ast_parse

def _module_of(source:str):
    code, k = _code(source.splitlines())
    return CELLS.get(code), k

def cache(self, transformed_code, number=0, raw_code=None):
    hit, _ = _module_of(transformed_code)
    return hit[0] if hit else _cache(self, transformed_code, number, raw_code)

def ast_parse(self, source, filename='<unknown>', symbol='exec'):
    tree = _parse(self, source, filename, symbol)
    hit, k = _module_of(source)
    if hit and filename == hit[0]: ast.increment_lineno(tree, hit[1] - 1 - k)
    return tree

CachingCompiler.cache, CachingCompiler.ast_parse = cache, ast_parse

SAVE = '--save' in sys.argv[1:]
_run_all = CaptureShell.run_all

def fresh_logging():
    "Logging as a fresh kernel has it: a worker runs several notebooks, and one (the command line's `main`) configures it"
    root = logging.getLogger()
    for h in root.handlers[:]: root.removeHandler(h)
    root.setLevel(logging.WARNING)
    for name, logger in logging.Logger.manager.loggerDict.items():
        if name.startswith('hybrid_retrieval') and isinstance(logger, logging.Logger):
            logger.setLevel(logging.NOTSET); logger.handlers.clear(); logger.propagate = True

class StoredOutputError(AssertionError): "A notebook's stored outputs are not what its cells show now"

def run_all(self, nb, *args, preproc=lambda cell: False, **kwargs):
    "Run the notebook as nbdev-test does, then check each cell that ran against its stored output"
    ran = [(n, cell, copy.deepcopy(cell.get('outputs', []))) for n, cell in enumerate(nb.cells) if not preproc(cell)]
    fresh_logging()
    _run_all(self, nb, *args, preproc=preproc, **kwargs)
    name = Path(getattr(nb, 'path_', None) or self._fname or '?').name
    if SAVE:
        for _, cell, _ in ran:
            if unseen(cell): cell.outputs = []
    problems = [f'{name} cell {n} ({cell.get("id")}): {p}' for n, cell, stored in ran
                for p in cell_problems(cell, stored, cell.get('outputs', []))
                if not SAVE or 'path of this machine' in p]
    if problems:
        sys.__stderr__.write('\n'.join(problems) + '\n')
        raise StoredOutputError(f'{name}: {len(problems)} stored output problem(s), listed above; refresh them with '
                                '`python tests/notebooks.py --save <notebook>` then `nbdev-clean`')

CaptureShell.run_all = run_all

# nbdev-test hands the notebooks to its workers in sorted order, so the longest, late in the alphabet, would run last,
# alone on one core. The longest measured (`tests/run.py` prints them) start first instead.
LONGEST = ('08b_toy_demo', '10_scale', 'hybrid_search_demo', '11_cli', '07_evaluation', '08a_toy_training', '06_config')

def longest_first(items, **kwargs):
    "`sorted`, with the notebooks named in LONGEST first, in its order (other items: plain `sorted`)"
    items = builtins.sorted(items, **kwargs)
    if not all(isinstance(f, (str, Path)) for f in items): return items
    return sorted(items, key=lambda f: LONGEST.index(Path(f).stem) if Path(f).stem in LONGEST else len(LONGEST))

nbdev.test.sorted = longest_first

if __name__ == '__main__': nbdev_test()

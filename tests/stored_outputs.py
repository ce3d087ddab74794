"""The docs show what they teach: a notebook's stored outputs are what its cells print now.

Quarto builds the docs site from the outputs stored in the notebooks, so a cell whose output was never stored shows the
reader nothing, and one whose output was stored before the code changed shows something the code no longer does.
`tests/notebooks.py` runs every notebook and, for each cell it ran, compares what the cell shows now with what is
stored (`cell_problems`):

- a cell that shows something (a value, printed text, a figure) must have it stored;
- a *deterministic* cell's stored output must equal the fresh one, compared as text (`shown`), after dropping the
  object ids nbdev-clean drops too and the random part of temporary folders' names (`/tmp/tmpk3x9_a2b` -> `<tmp>`);
  numbers count as equal within 1% (`same`): floating-point results differ a little between CPUs (AVX2, AVX-512).
  Every cell counts as deterministic unless it says otherwise with the directive `#| varies: why` (timings, memory,
  process ids, the machine's CPU): for those only the presence of an output is checked;
- no output, stored or fresh, may hold a path of the machine that ran it (the checkout, the home folder, the Python
  installation): the docs are read on other machines. A temporary folder, which a chapter makes and removes, is no
  such path.

Cells whose output the page does not show (`#| hide`, `#| output: false`) are left out, and `--save` stores no output
for them. Cells flagged `slow` do not run in the test command; their stored
output is kept, and `static_problems` checks it holds no machine path and that one which ends in an expression has one.

`python tests/notebooks.py --save` (nbdev-test's own flag) writes the fresh outputs into the notebooks instead of
failing on stale ones; run `nbdev-clean` after it."""
import ast, json, os, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VARIES = 'varies'   # the directive of a cell whose output changes from run to run
_OBJECT_ID = re.compile(r' at 0x[0-9a-fA-F]+')
_TEMP_DIR = re.compile(r"(?:/[^\s'\"/]+)*/?(?<![\w.-])tmp[a-z0-9_]{8}(?![\w.-])")   # what tempfile.mkdtemp() names


def machine_paths()->list[str]:
    "Folders of this machine that must not appear in a stored output, longest first"
    paths = {str(ROOT), os.path.realpath(ROOT), str(Path.home()), sys.prefix, sys.base_prefix,
             os.path.realpath(sys.prefix)}
    return sorted((p.rstrip('/') + '/' for p in paths if p and p != '/'), key=len, reverse=True)


def _text(x)->str: return ''.join(x) if isinstance(x, list) else str(x)


def shown(outputs:list)->list[str]:
    "What a reader sees of a cell's outputs, as text: printed text (stdout, then stderr), values, '<image>' for a picture"
    streams = {name: ''.join(_text(o.get('text', '')) for o in outputs or [] if o.get('name') == name)
               for name in ('stdout', 'stderr')}   # log lines and results may interleave differently from run to run
    out = [f'{name}: {text}' for name, text in streams.items() if text]
    for o in outputs or []:
        kind = o.get('output_type')
        if kind in ('execute_result', 'display_data'):
            data = o.get('data', {})
            if any(k.startswith('image/') for k in data): out.append('<image>')
            else: out.append(_text(data.get('text/markdown', data.get('text/plain', ''))))
        elif kind == 'error': out.append(f"error: {o.get('ename')}: {o.get('evalue')}")
    return [_TEMP_DIR.sub('<tmp>', _OBJECT_ID.sub('', '\n'.join(l.rstrip() for l in s.splitlines()))).strip()
            for s in out]


def path_problem(outputs:list)->str|None:
    "The first machine path an output holds, in a line; None when there is none"
    for s in shown(outputs) + [_text(o.get('data', {}).get('text/html', '')) for o in outputs or []]:
        for p in machine_paths():
            if p in s: return f'shows a path of this machine ({p}): print names relative to a folder, or `~`'
    return None


_NUMBER = re.compile(r'(?<![\w.])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w.])')   # not inside words or hex ids


def _close(x:str, y:str, rel:float)->bool:
    a, b = float(x), float(y)
    return x == y or abs(a - b) <= rel * max(abs(a), abs(b))


def same(old:list[str], new:list[str], rel:float=0.01)->bool:
    "Whether two outputs' texts are equal, their numbers within `rel` of each other"
    a, b = '\n'.join(old), '\n'.join(new)
    if _NUMBER.sub('#', a) != _NUMBER.sub('#', b): return False
    return all(_close(x, y, rel) for x, y in zip(_NUMBER.findall(a), _NUMBER.findall(b)))


def _first_difference(a:list[str], b:list[str])->str:
    la, lb = '\n'.join(a).splitlines(), '\n'.join(b).splitlines()
    for n, (x, y) in enumerate(zip(la, lb), 1):
        if x != y: return f'line {n}: stored {x[:80]!r}, now {y[:80]!r}'
    return f'stored {len(la)} line(s), now {len(lb)}'


def unseen(cell)->bool:
    "Whether the page leaves the cell's output out"
    directives = getattr(cell, 'directives_', None) or {}
    return 'hide' in directives or str(directives.get('output', '')).strip().lower() == 'false'


def cell_problems(cell, stored:list, fresh:list)->list[str]:
    "What is wrong with a cell's stored output, given what the cell shows when run now"
    directives = getattr(cell, 'directives_', None) or {}
    if unseen(cell): return []
    old, new = shown(stored), shown(fresh)
    problems = [p for p in (path_problem(fresh),) if p]
    if new and not old: problems.append('shows output when run but stores none')
    elif VARIES not in directives and not same(old, new):
        problems.append('stored output is stale: ' + _first_difference(old, new))
    return problems


def _ends_in_expression(source:str)->bool:
    code = '\n'.join(l for l in source.splitlines() if not l.lstrip().startswith(('#|', '%', '!')))
    try: body = ast.parse(code).body
    except SyntaxError: return False
    return bool(body) and isinstance(body[-1], ast.Expr) and not isinstance(body[-1].value, ast.Call)


def static_problems(path:Path, skip_flags=('slow',))->list[str]:
    "Problems of a notebook's stored outputs that need no run: machine paths anywhere; an unstored `slow` cell's value"
    problems = []
    for n, cell in enumerate(json.loads(Path(path).read_text())['cells']):
        if cell['cell_type'] != 'code': continue
        where = f"{Path(path).name} cell {n} ({cell.get('id')})"
        source = _text(cell['source'])
        if p := path_problem(cell.get('outputs', [])): problems.append(f'{where}: {p}')
        flags = {l.strip()[2:].strip().split(':')[0] for l in source.splitlines() if l.strip().startswith('#|')}
        if flags & set(skip_flags) and 'hide' not in flags and _ends_in_expression(source) and not cell.get('outputs'):
            problems.append(f'{where}: ends in an expression but stores no output (run it with --flags slow --save)')
    return problems

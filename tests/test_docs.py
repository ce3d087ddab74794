"""The docs site's structure: every notebook is in the sidebar once, and the sidebar names no missing page; the check of
the rendered pages (.ci/docs_check.py) fails on each kind of broken page (in a browser: conftest.py says when one is
missing); the check of stored outputs (stored_outputs.py) fails on each kind of missing, stale or leaking output."""
import importlib.util, json, os
from pathlib import Path
import pytest, yaml
from fastcore.basics import AttrDict
from PIL import Image
from stored_outputs import ROOT, cell_problems, shown, static_problems

NBS = Path(__file__).resolve().parent.parent/'nbs'


def _pages(items):
    for item in items:
        if isinstance(item, str): yield item
        else: yield from _pages(item['contents'])


def test_sidebar_lists_every_notebook_once():
    listed = list(_pages(yaml.safe_load((NBS/'sidebar.yml').read_text())['website']['sidebar']['contents']))
    notebooks = sorted(rel.as_posix() for rel in (p.relative_to(NBS) for p in NBS.rglob('*.ipynb')) if not any(part.startswith(('.', '_')) for part in rel.parts))
    assert sorted(listed) == notebooks
    assert len(listed) == len(set(listed))


# The rendered-docs check (.ci/docs_check.py) fails on a broken page: each kind of breakage, on a miniature docs folder.
spec = importlib.util.spec_from_file_location('docs_check', NBS.parent/'.ci'/'docs_check.py')
docs_check = importlib.util.module_from_spec(spec); spec.loader.exec_module(docs_check)
MERMAID = os.environ.get('HYBRID_RETRIEVAL_MERMAID')   # the unpacked npm package (.ci/run fetches it): diagrams drawn


def _nb(*cells):
    return {'cells': [{'cell_type': t, 'id': f'c{i}', 'metadata': {}, 'source': s,
                       **({'outputs': o, 'execution_count': None} if t == 'code' else {})}
                      for i, (t, s, o) in enumerate(cells)], 'metadata': {}, 'nbformat': 4, 'nbformat_minor': 5}


def _site(tmp, bad:dict):
    "A processed docs folder with a good page and a page broken as `bad` says (the rest good)"
    proc = tmp/'_proc'; proc.mkdir()
    Image.new('RGB', (20, 10), 'red').save(proc/'pic.png')
    (proc/'sidebar.yml').write_text('website:\n  sidebar:\n    contents:\n      - good.ipynb\n      - section: More\n'
                                    '        contents:\n          - page.ipynb\n' + bad.get('sidebar', ''))
    fm = ('raw', '---\ntitle: A page\n---', None)
    good = [fm, ('markdown', 'Text.\n\n```{mermaid}\nflowchart LR\n  A --> B\n```\n\n![](pic.png)', None),
            ('code', '#| echo: false\n#| output: asis\nshow_doc(f)', [{'output_type': 'display_data', 'metadata': {},
             'data': {'text/markdown': '### f\n\n> f(x)', 'text/plain': 'f'}}]),
            ('code', 'x = 1\nx', [{'output_type': 'execute_result', 'metadata': {}, 'execution_count': 1,
                                    'data': {'text/plain': '1'}}])]
    (proc/'good.ipynb').write_text(json.dumps(_nb(*good)))
    page = [c for c in good if c[0] != 'code' or 'x = 1' not in c[1]] + bad.get('cells', [good[-1]])
    if 'markdown' in bad: page[1] = ('markdown', bad['markdown'], None)
    (proc/'page.ipynb').write_text(json.dumps(_nb(*page)))
    return proc


BROKEN = {
    'a flag Quarto does not read': ({'cells': [('code', 'x = 1\n#| export', [])]},
                                    "page: unprocessed cell flags: ['#| export']"),
    'an error output': ({'cells': [('code', '1/0', [{'output_type': 'error', 'ename': 'ZeroDivisionError',
                         'evalue': 'division by zero', 'traceback': ['Traceback (most recent call last)']}])]},
                        'page: cell 3: error output ZeroDivisionError: division by zero'),
    'a missing image': ({'markdown': 'See ![](missing.png)'}, "page: images that do not load: ['missing.png']"),
    'a dead sidebar entry': ({'sidebar': '          - gone.ipynb\n'},
                             'gone: in the sidebar, but there is no gone.ipynb'),
}


@pytest.mark.parametrize('name', BROKEN)
def test_docs_check_fails_on_a_broken_page(tmp_path, name, needs_browser):
    bad, problem = BROKEN[name]
    problems = docs_check.check(_site(tmp_path, bad), tmp_path/'out', MERMAID and Path(MERMAID))
    assert problem in problems, problems
    assert not [p for p in problems if p.startswith('good:') and 'sidebar' not in p], problems   # the good page passes


def test_docs_check_passes_a_good_site_and_limits_size(tmp_path, needs_browser):
    proc = _site(tmp_path, {})
    assert docs_check.check(proc, tmp_path/'out', MERMAID and Path(MERMAID)) == []
    too_big = docs_check.check(proc, tmp_path/'out', max_kb=1)
    assert [p.split(': ')[0] for p in too_big] == ['good', 'page'] and 'KB of HTML, over 1 KB' in too_big[0], too_big


@pytest.mark.skipif(not MERMAID, reason='draws diagrams: needs the mermaid package ($HYBRID_RETRIEVAL_MERMAID)')
def test_docs_check_fails_on_a_diagram_that_does_not_draw(tmp_path, needs_browser):
    proc = _site(tmp_path, {'markdown': '```{mermaid}\nflowchart LR\n  A --> [[[\n```'})
    assert 'page: 0 of 1 mermaid diagrams drawn' in docs_check.check(proc, tmp_path/'out', Path(MERMAID))


# Stored outputs (tests/stored_outputs.py): what `tests/notebooks.py` checks after each notebook runs, and what needs no run

def _cell(source='x', **directives):
    return AttrDict(cell_type='code', source=source, directives_=directives, outputs=[])

def _value(text): return [{'output_type': 'execute_result', 'metadata': {}, 'data': {'text/plain': text}}]


def test_a_cell_that_shows_output_must_store_it():
    "Today's 09_server: value-ending cells with no stored output"
    assert cell_problems(_cell(), [], _value("{'status': 'ok'}")) == ['shows output when run but stores none']
    assert cell_problems(_cell(), [], []) == []


def test_a_deterministic_cells_stored_output_must_be_current():
    stale = cell_problems(_cell(), _value('skipped 2 malformed row(s)'), _value('skipped 2 malformed rows: a.csv:3'))
    assert stale == ["stored output is stale: line 1: stored 'skipped 2 malformed row(s)', now "
                     "'skipped 2 malformed rows: a.csv:3'"]
    assert cell_problems(_cell(varies='timings'), _value('12 ms'), _value('14 ms')) == []   # only its presence counts
    assert cell_problems(_cell(), _value('R@1 71.7, score 0.54885'), _value('R@1 71.6, score 0.54886')) == []   # CPUs
    assert cell_problems(_cell(), _value('skipped 2 rows'), _value('skipped 3 rows')) != []
    stamp = _value("'local-dir:hybrid_retrieval/toy_models/clip@a49e882604a048fe', 1e-05")   # digits in an id: text
    assert cell_problems(_cell(), stamp, stamp) == []
    assert cell_problems(_cell(), stamp, _value("'local-dir:hybrid_retrieval/toy_models/clip@a49e882604a048ff', 1e-05"))
    assert cell_problems(_cell(hide=''), [], _value('1')) == []                            # readers never see it
    assert cell_problems(_cell(output='false'), [], _value('1')) == []
    ids = _value('<Foo at 0x7f3a2c>, /tmp/tmpk3x9_a2b/index'), _value('<Foo at 0x55d1e0>, /tmp/tmp_81mzqpl/index')
    assert cell_problems(_cell(), *ids) == [] and shown(ids[0]) == ['<Foo>, <tmp>/index']


def test_no_output_names_a_path_of_this_machine(tmp_path):
    leak = _value(f"BiEncoder('local-dir:{ROOT}/hybrid_retrieval/toy_models/clip@a49e', dim=64)")
    assert [p.split(' (')[0] for p in cell_problems(_cell(varies='timings'), leak, leak)] == ['shows a path of this machine']
    nb = {'cells': [{'cell_type': 'code', 'id': 'a1', 'metadata': {}, 'source': '#| slow\nsweep', 'outputs': []},
                    {'cell_type': 'code', 'id': 'b2', 'metadata': {}, 'source': 'bi', 'outputs': leak}]}
    (tmp_path/'page.ipynb').write_text(json.dumps(nb))
    assert [p.split(': ')[1] for p in static_problems(tmp_path/'page.ipynb')] == [
        'ends in an expression but stores no output (run it with --flags slow --save)',
        f'shows a path of this machine ({ROOT}/)']


def test_every_notebooks_stored_outputs_hold_no_machine_path():
    assert [p for nb in sorted(NBS.rglob('*.ipynb')) if '.ipynb_checkpoints' not in nb.parts
            for p in static_problems(nb)] == []

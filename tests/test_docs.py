"The docs site's structure: every notebook is in the sidebar once, and the sidebar names no missing page."
from pathlib import Path
import yaml

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

"""Write README.md from nbs/index.ipynb (what `nbdev-readme` does, without Quarto): markdown cells as they are, visible code
cells in ```python fences followed by their saved text output. `--check` exits 1 when README.md differs."""
import json, sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent

def cell_text(cell):
    src = ''.join(cell['source'])
    if cell['cell_type'] == 'markdown': return src.replace('```{mermaid}', '```mermaid')
    if src.lstrip().startswith('#| hide'): return None
    src = '\n'.join(l for l in src.splitlines() if not l.startswith('#|'))   # cell options: for Quarto, not readers
    out = [f'```python\n{src}\n```']
    texts = [''.join(o.get('text', '')) if o['output_type'] == 'stream' else ''.join(o.get('data', {}).get('text/plain', ''))
             for o in cell.get('outputs', []) if o['output_type'] == 'stream' or 'image/png' not in o.get('data', {})]
    text = ''.join(t if t.endswith('\n') else t + '\n' for t in texts if t).rstrip('\n')
    if text: out.append(f'```\n{text}\n```')
    return '\n\n'.join(out)

def readme():
    nb = json.loads((root/'nbs'/'index.ipynb').read_text())
    parts = [t for c in nb['cells'] if (t := cell_text(c)) is not None]
    text = '\n\n'.join(parts) + '\n'
    for folder in ('tutorials/', 'screenshots/'): text = text.replace(f']({folder}', f'](nbs/{folder}')
    return text

if __name__ == '__main__':
    text, path = readme(), root/'README.md'
    if '--check' in sys.argv:
        if path.read_text() != text: sys.exit('README.md does not match nbs/index.ipynb: run `python .ci/readme.py` and commit it')
    else: path.write_text(text)

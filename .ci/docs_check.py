"""Render every docs page to HTML and look at it in a real browser: the closest stand-in for the Quarto site here.

    nbdev-proc-nbs && python .ci/docs_check.py [--proc _proc] [--out _site_check] [--mermaid DIR] [--screenshots DIR]
    nbdev-docs && python .ci/docs_check.py --site _docs     # the Quarto site has exactly the pages checked here

Quarto cannot be installed on these machines, so the pages nbdev processes for it (`nbdev-proc-nbs` writes `_proc/`)
are rendered with nbconvert's HTML exporter instead, each with a sidebar built from `sidebar.yml` (the same list Quarto
reads), served over HTTP and opened in headless Chromium (Debian's `chromium`, driven by Playwright). A page fails if:
  - a line of it starts with a cell flag (`#|`): a directive that was not processed;
  - a cell has an error output, or the page shows a traceback;
  - an image does not load;
  - it has fewer rendered mermaid diagrams than its markdown has (with `--mermaid`, the unpacked npm package `mermaid`,
    they are drawn as SVG; without it, the diagram sources must be on the page);
  - a sidebar entry does not reach a page;
  - its HTML is over `--max-kb`.
`--screenshots DIR` keeps one screen (1280x800) of the home page and of the demo page. Prints one line per problem;
exits 1 if there is any.
"""
import argparse, functools, html, http.server, re, shutil, sys, threading
from pathlib import Path
import nbformat, yaml
from nbconvert import HTMLExporter
from nbconvert.preprocessors import TagRemovePreprocessor

SHOTS = {'index': 'docs-home.png', 'tutorials/hybrid_search_demo': 'docs-demo.png'}
_MERMAID = re.compile(r'^```\{?mermaid\}?\s*$', re.M)
_CDN = re.compile(r'"https://[^"]*/mermaid/[\d.]+/mermaid\.esm\.min\.mjs"')
_ELK = re.compile(r'const elkUrl = "[^"]*";')

def sidebar_pages(proc:Path)->list[str]:
    "The notebooks the sidebar lists, in order (paths relative to `proc`, without .ipynb)"
    def walk(items):
        for it in items:
            if isinstance(it, str): yield it.removesuffix('.ipynb')
            else: yield from walk(it['contents'])
    return list(walk(yaml.safe_load((proc/'sidebar.yml').read_text())['website']['sidebar']['contents']))

def front_matter(nb)->dict:
    "The YAML front matter nbdev puts in a raw first cell (title, description, ...)"
    c = nb.cells[0] if nb.cells else None
    if c is None or c.cell_type != 'raw' or not c.source.startswith('---'): return {}
    return yaml.safe_load(c.source.strip().strip('-')) or {}

def nb_problems(nb)->list[str]:
    "Error outputs in the processed notebook"
    return [f"cell {i}: error output {o.get('ename')}: {str(o.get('evalue'))[:80]}" for i,c in enumerate(nb.cells)
            for o in c.get('outputs', []) if o.get('output_type') == 'error']

_OPTION = re.compile(r'^#\|\s*([\w-]+):\s*(.+?)\s*$')

def quarto_cell(cell):
    "Apply the cell options Quarto reads (leading `#| key: value` lines, which it removes): None drops the cell"
    lines, opts = cell.source.splitlines(), {}
    while lines and (m := _OPTION.match(lines[0])): opts[m[1]] = yaml.safe_load(m[2]); lines.pop(0)
    cell.source = '\n'.join(lines)
    cell.pop('has_sd', None)   # nbdev's marks (a show_doc cell, execution timing): not part of the notebook format
    cell.metadata.pop('execution', None)
    if opts.get('include') is False: return None
    if opts.get('output') == 'asis' and opts.get('echo') is False:   # show_doc: its markdown goes into the page
        md = ''.join(''.join(o.get('data', {}).get('text/markdown', '')) for o in cell.get('outputs', []))
        return nbformat.v4.new_markdown_cell(md)
    tags = ['remove_input'] * (opts.get('echo') is False) + ['remove_output'] * (opts.get('output') is False)
    cell.metadata['tags'] = cell.metadata.get('tags', []) + tags
    return cell

def nav(pages:list[str], titles:dict, here:str)->str:
    "The sidebar: a link to every page, relative to `here`"
    up = '../' * here.count('/')
    links = ''.join(f'<li><a href="{up}{p}.html">{html.escape(titles[p])}</a></li>' for p in pages)
    return (f'<nav id="docs-sidebar" style="position:fixed;left:0;top:0;bottom:0;width:220px;overflow:auto;'
            f'font:13px sans-serif;padding:8px;background:#f7f7f7"><ul>{links}</ul></nav>'
            '<div style="margin-left:240px">')

def render(proc:Path, out:Path, mermaid:Path|None)->dict:
    "Write each sidebar page as HTML under `out`, beside the assets; returns {page: (expected diagrams, problems)}"
    if out.exists(): shutil.rmtree(out)
    shutil.copytree(proc, out, ignore=shutil.ignore_patterns('*.ipynb', '_*', '.*'))
    if mermaid: (out/'_mermaid').symlink_to(mermaid.resolve(), target_is_directory=True)
    pages, exporter, found = sidebar_pages(proc), HTMLExporter(template_name='lab'), {}
    exporter.register_preprocessor(TagRemovePreprocessor(remove_input_tags={'remove_input'},
                                                         remove_all_outputs_tags={'remove_output'}), enabled=True)
    nbs = {p: nbformat.read(proc/f'{p}.ipynb', as_version=4) for p in pages if (proc/f'{p}.ipynb').is_file()}
    titles = {p: front_matter(nb).get('title', p) if (nb := nbs.get(p)) else p for p in pages}
    for p, nb in nbs.items():
        fm, problems = front_matter(nb), nb_problems(nb)
        if fm: nb.cells = nb.cells[1:]
        nb.cells = [c for c in (quarto_cell(c) if c.cell_type == 'code' else c for c in nb.cells) if c is not None]
        diagrams = 0
        for c in nb.cells:
            if c.cell_type == 'markdown':
                diagrams += len(_MERMAID.findall(c.source))
                c.source = _MERMAID.sub('```mermaid', c.source)   # Quarto's ```{mermaid} is nbconvert's ```mermaid
        esc = lambda k: html.escape(str(fm.get(k, '')))
        head = f"<h1>{esc('title')}</h1><p>{esc('description')}</p>" if fm else ''
        page, _ = exporter.from_notebook_node(nb)
        if mermaid:
            page = _ELK.sub('const elkUrl = "";', _CDN.sub('"/_mermaid/dist/mermaid.esm.min.mjs"', page))
        page = re.sub(r'(<body[^>]*>)', lambda m: m.group(1) + nav(pages, titles, p) + head, page, count=1)
        page = page.replace('</body>', '</div></body>')
        (out/f'{p}.html').parent.mkdir(parents=True, exist_ok=True)
        (out/f'{p}.html').write_text(page)
        found[p] = (diagrams, problems)
    return found

def serve(folder:Path):
    "An HTTP server for `folder` on a free local port (ES modules do not load from file:// URLs)"
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args): pass
    handler = functools.partial(Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server

DRAWN = '.jp-RenderedMermaid img, .jp-RenderedMermaid svg'   # nbconvert's template draws a diagram as an image
PAGE_JS = """() => ({
  flags: document.body.innerText.split('\\n').filter(l => /^\\s*#\\|/.test(l)).slice(0, 3),
  traceback: document.body.innerText.includes('Traceback (most recent call last)'),
  broken: [...document.images].filter(i => !i.complete || i.naturalWidth === 0)
            .map(i => (i.getAttribute('src') || '').slice(0, 80)),
  drawn: document.querySelectorAll(DRAWN).length,
  sources: document.querySelectorAll('pre.mermaid').length,
  links: [...document.querySelectorAll('#docs-sidebar a')].map(a => a.href)})""".replace('DRAWN', repr(DRAWN))

def look(page, url:str, diagrams:int, mermaid:bool)->tuple[list[str], list[str]]:
    "Open `url` and return (its problems, its sidebar links)"
    page.goto(url, wait_until='load')
    if mermaid and diagrams:
        try: page.wait_for_function(f"document.querySelectorAll({DRAWN!r}).length >= {diagrams}", timeout=30_000)
        except Exception: pass   # reported below with the count
    r, problems = page.evaluate(PAGE_JS), []
    if r['flags']: problems.append(f"unprocessed cell flags: {r['flags']}")
    if r['traceback']: problems.append('a traceback is shown')
    if r['broken']: problems.append(f"images that do not load: {r['broken']}")
    shown = r['drawn'] if mermaid else r['sources']
    if shown < diagrams: problems.append(f"{shown} of {diagrams} mermaid diagrams {'drawn' if mermaid else 'present'}")
    return problems, r['links']

def check(proc:Path, out:Path, mermaid:Path|None=None, max_kb:int=4096, screenshots:Path|None=None)->list[str]:
    "Render and look at every page; the problems found, one line each"
    from playwright.sync_api import sync_playwright
    found, problems, listed, reached = render(proc, out, mermaid), [], sidebar_pages(proc), {}
    problems += [f'{p}: in the sidebar, but there is no {p}.ipynb' for p in listed if p not in found]
    server = serve(out)
    base = f'http://127.0.0.1:{server.server_port}'
    try:
        with sync_playwright() as pw:
            try: browser = pw.chromium.launch(executable_path=shutil.which('chromium'), args=['--no-sandbox'])
            except Exception as e:   # one line, not Playwright's traceback
                raise SystemExit(f'docs check: headless Chromium cannot start ({str(e).splitlines()[0]}): '
                                 'apt-get install -y chromium') from None
            page = browser.new_page(viewport={'width': 1280, 'height': 800})
            for p, (diagrams, nb_probs) in found.items():
                kb = (out/f'{p}.html').stat().st_size / 1024
                probs, links = look(page, f'{base}/{p}.html', diagrams, mermaid is not None)
                probs = nb_probs + probs + ([f'{kb:,.0f} KB of HTML, over {max_kb:,} KB'] if kb > max_kb else [])
                for l in links:   # every page shows the same sidebar: fetch each target once
                    if l not in reached: reached[l] = page.request.get(l).ok
                dead = [l for l in links if not reached[l]]
                if dead: probs.append(f"sidebar entries that reach no page: {dead}")
                if len(links) != len(listed): probs.append(f'{len(links)} sidebar entries shown')
                problems += [f'{p}: {x}' for x in probs]
                if screenshots and p in SHOTS:
                    screenshots.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(screenshots/SHOTS[p]))
            browser.close()
    finally: server.shutdown()
    return problems

def site_problems(proc:Path, site:Path)->list[str]:
    "Where the Quarto site in `site` (nbdev-docs' _docs) has other pages than the sidebar: the pages this check renders"
    pages = set(sidebar_pages(proc))
    built = {h.relative_to(site).with_suffix('').as_posix() for h in site.rglob('*.html') if 'site_libs' not in h.parts}
    return ([f'{p}: in the sidebar, but the site has no {p}.html' for p in sorted(pages - built)] +
            [f'{p}: the site has {p}.html, which the sidebar does not list' for p in sorted(built - pages)])

def main(argv=None)->int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--proc', type=Path, default=Path('_proc'), help="nbdev-proc-nbs's output")
    ap.add_argument('--out', type=Path, default=Path('_site_check'))
    ap.add_argument('--mermaid', type=Path, help='the unpacked npm package mermaid (draws the diagrams)')
    ap.add_argument('--max-kb', type=int, default=4096, help='largest page, in KB of HTML')
    ap.add_argument('--screenshots', type=Path, help='keep screenshots of the home and demo pages here')
    ap.add_argument('--site', type=Path, help="only compare the pages of a built Quarto site (nbdev-docs' _docs) "
                                              "with the sidebar's")
    args = ap.parse_args(argv)
    if not (args.proc/'sidebar.yml').is_file(): ap.error(f'no sidebar.yml in {args.proc}: run nbdev-proc-nbs first')
    if args.mermaid and not (args.mermaid/'dist'/'mermaid.esm.min.mjs').is_file():
        ap.error(f'--mermaid {args.mermaid}: no dist/mermaid.esm.min.mjs there (unpack `npm pack mermaid`)')
    if args.site and not args.site.is_dir(): ap.error(f'--site {args.site}: no such folder (run nbdev-docs first)')
    if args.site: problems = site_problems(args.proc, args.site)
    else: problems = check(args.proc, args.out, args.mermaid, args.max_kb, args.screenshots)
    for p in problems: print(p)
    n = len(sidebar_pages(args.proc))
    print(f"docs check: {n} pages, {len(problems)} problems", file=sys.stderr)
    return 1 if problems else 0

if __name__ == '__main__': sys.exit(main())

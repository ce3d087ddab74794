"""The project's one test command: `python tests/run.py`, from the repository root, after `pip install -e ".[dev]"`.

It runs, in order, what CI runs:
1. README.md says what nbs/index.ipynb says (`.ci/readme.py --check`);
2. every docs page rendered and looked at in headless Chromium (`nbdev-proc-nbs`, `.ci/docs_check.py`), diagrams drawn
   when `$HYBRID_RETRIEVAL_MERMAID` names the unpacked npm package `mermaid`;
3. every notebook in `nbs/` as a test (`tests/notebooks.py`: nbdev-test, measured by coverage), timed one by one, each
   cell's stored output checked against what it shows now (`tests/stored_outputs.py`);
4. the integration tests (`pytest tests`), a worker per core (pytest-xdist), the slowest listed;
5. line coverage of the package over 3 and 4, failing below `fail_under` in pyproject.toml.

Without a browser, step 2 and the browser tests in 4 skip with one line saying what to install, unless
`HYBRID_RETRIEVAL_BROWSER_TESTS=required` (CI sets it): then they fail. Every step runs even when an earlier one failed;
the last lines give each step's time, the slowest notebooks and the total, and the command exits 1 if any step failed.
Extra arguments go to nbdev-test, e.g. `python tests/run.py --flags slow` also runs the cells flagged `slow`."""
import os, re, shutil, subprocess, sys, tempfile, time
from pathlib import Path
from browser import BROWSER_REQUIRED, browser_problem

ROOT = Path(__file__).resolve().parent.parent
BUDGET_MIN = 15   # the whole command on a 2-core machine, as the README states


def step(name:str, *cmds:list[str], capture:bool=False)->tuple[bool, float, str]:
    "Run `cmds` one after the other (stopping at a failure), echoing their output; (passed, seconds, output)"
    print(f'\n== {name}', flush=True)
    start, out, ok = time.perf_counter(), [], True
    for cmd in cmds:
        if not capture: ok = subprocess.run(cmd, cwd=ROOT).returncode == 0
        else:
            p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for line in p.stdout: print(line, end='', flush=True); out.append(line)
            ok = p.wait() == 0
        if not ok: break
    return ok, time.perf_counter() - start, ''.join(out)


def docs_step()->tuple[bool, float, str]:
    "The rendered pages, or one line saying why they are not looked at here"
    problem = browser_problem()
    if problem and not BROWSER_REQUIRED:
        print(f'\n== docs pages: skipped: {problem}', flush=True)
        return True, 0.0, ''
    shots = Path(tempfile.mkdtemp(prefix='docs-shots-'))
    mermaid = os.environ.get('HYBRID_RETRIEVAL_MERMAID')
    draw = ['--mermaid', mermaid] if mermaid else []
    check = [sys.executable, '.ci/docs_check.py', '--screenshots', str(shots), *draw]
    try: return step('docs pages, rendered and looked at in headless Chromium', ['nbdev-proc-nbs'], check)
    finally:
        for d in (ROOT/'_proc', ROOT/'_site_check', shots): shutil.rmtree(d, ignore_errors=True)


def main(nbdev_args:list[str])->int:
    py, cov = sys.executable, [sys.executable, '-m', 'coverage']
    start, results = time.perf_counter(), {}
    results['README check'] = step('README.md says what nbs/index.ipynb says', [py, '.ci/readme.py', '--check'])
    results['docs pages'] = docs_step()
    subprocess.run(cov + ['erase'], cwd=ROOT, check=True)
    results['notebooks'] = step('every notebook, as a test (nbdev-test under coverage)',
                                cov + ['run', 'tests/notebooks.py', '--timing'] + nbdev_args, capture=True)
    results['pytest'] = step('the integration tests, one worker per core (pytest-xdist; a file stays on one worker)',
                             [py, '-m', 'pytest', '-q', '-n', 'auto', '--dist', 'loadfile', '--durations=10', 'tests'])
    results['coverage'] = step('line coverage of the package (fails below fail_under)', cov + ['combine', '-q'],
                               cov + ['report', '--skip-covered', '--sort=cover'])
    total = time.perf_counter() - start
    slowest = re.findall(r'^(\S+\.ipynb): (\d+) secs$', results['notebooks'][2], re.M)[:8]
    print('\n== time (reported, not asserted; the budget is the whole command in '
          f'{BUDGET_MIN} minutes on 2 cores)')
    for name, (ok, secs, _) in sorted(results.items(), key=lambda kv: -kv[1][1]):
        print(f'{name:14} {secs:7.0f} s  {"passed" if ok else "FAILED"}')
    if slowest: print('slowest notebooks: ' + ', '.join(f'{n} {s} s' for n, s in slowest))
    failed = [name for name, (ok, _, _) in results.items() if not ok]
    print(f'total          {total:7.0f} s ({total/60:.1f} min)' + (f'; failed: {", ".join(failed)}' if failed else
                                                                      '; every step passed'))
    return 1 if failed else 0


if __name__ == '__main__': sys.exit(main(sys.argv[1:]))

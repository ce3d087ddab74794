"""Run a notebook top to bottom as its reader would: every code cell in order, in a fresh IPython shell, in the current
folder, skipping only the cells flagged with `--skip` (default `hub`: the package install). Unlike `nbdev-test` it
ignores `skip_exec` (the notebooks that set it need a prepared environment, which the caller gives).

    python tests/run_notebook.py NOTEBOOK [--skip hub] [--save OUT.ipynb] [--cell-timeout 900]

Prints the executed and skipped cells; on a failing cell prints its traceback and exits 1."""
import argparse, sys
from pathlib import Path
from execnb.shell import CaptureShell
from fastcore.nbio import write_nb
from nbdev.process import NBProcessor

def flags(cell)->set: return set(getattr(cell, 'directives_', None) or {})

def main(argv=None)->int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('notebook', type=Path)
    ap.add_argument('--skip', nargs='*', default=['hub'], help='cells flagged with any of these are not run')
    ap.add_argument('--save', type=Path, help='write the notebook with its outputs here')
    ap.add_argument('--cell-timeout', type=int, default=900)
    args = ap.parse_args(argv)
    nb = NBProcessor(args.notebook, rm_directives=False, process=True).nb
    skip = lambda c: c.cell_type != 'code' or bool(flags(c) & set(args.skip))
    shell = CaptureShell(args.notebook)
    try: shell.run_all(nb, exc_stop=True, preproc=skip, cell_timeout=args.cell_timeout)
    except BaseException:
        sys.stderr.write((shell.prettytb(fname=args.notebook) or 'failed') + '\n')
        return 1
    finally:
        if args.save: write_nb(nb, args.save)
    code = [c for c in nb.cells if c.cell_type == 'code']
    print(f"{args.notebook.name}: ran {sum(not skip(c) for c in code)} code cells, skipped "
          f"{[c.source.splitlines()[0] for c in code if skip(c)]}")
    return 0

if __name__ == '__main__': sys.exit(main())

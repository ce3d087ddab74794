"""How fast the command answers from a fresh process: `--help`, a bad argument, a toy search, a toy server's first
answer.

    python benchmarks/cold_start.py [--runs 3] [--output FILE]

Each figure is the median wall time of `--runs` fresh processes of the installed `hybrid-retrieval` command (the
search's and the server's include loading torch, open_clip, transformers and the toy models; the page cache is warm
after the first run). The toy index is built first in a temporary cache folder (not timed). Prints one JSON object
with the CPU's model and flags, and writes it to `--output` (default benchmarks/results/cold_start_cpu.json). The
targets: `--help` and a bad argument under 1 s, a toy search under 5 s, on a quiet 2-core machine."""
import argparse, json, os, platform, shutil, statistics, subprocess, tempfile, time, urllib.error, urllib.parse
import urllib.request
from pathlib import Path
from serve import free_port, script   # benchmarks/serve.py: the installed command, a free local port
from common import cpu

QUERY = 'two shapes : a small green square left of a big purple triangle'


def timed(cmd:list[str], env:dict, ok_codes=(0,))->float:
    "Wall time of one fresh process running `cmd`, which must exit with one of `ok_codes`"
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    secs = time.perf_counter() - start
    if done.returncode not in ok_codes:
        last = (done.stderr.strip().splitlines() or ['no output'])[-1]
        raise SystemExit(f'{" ".join(cmd[1:])}: exit {done.returncode}: {last}')
    return secs


def serve_first_answer(env:dict)->float:
    "From starting `serve --preset toy` to its first search's answer"
    port = free_port()
    start = time.perf_counter()
    proc = subprocess.Popen([script(), 'serve', '--preset', 'toy', '--port', str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f'http://127.0.0.1:{port}/api/search?' + urllib.parse.urlencode({'q': QUERY})
    try:
        while time.perf_counter() - start < 120:
            if proc.poll() is not None: raise SystemExit(f'serve exited with {proc.returncode}')
            try:
                with urllib.request.urlopen(url, timeout=60) as r: r.read()
                return time.perf_counter() - start
            except urllib.error.HTTPError as e: raise SystemExit(f'serve answered {e.code}: {e.read()[:200]!r}')
            except OSError: time.sleep(0.05)   # not listening yet
        raise SystemExit('serve gave no answer in 120 s')
    finally:
        proc.terminate(); proc.wait(30)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--runs', type=int, default=3, help='fresh processes per figure (the median is reported)')
    ap.add_argument('--output', default=str(Path(__file__).parent/'results'/'cold_start_cpu.json'))
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix='cold-start-'))
    env = {**os.environ, 'XDG_CACHE_HOME': str(tmp/'cache'), 'HF_HUB_OFFLINE': '1'}
    env.pop('HYBRID_RETRIEVAL_CONFIG', None)
    cli = script()
    try:
        timed([cli, 'index', '--preset', 'toy'], env)   # the toy index the searches read (not timed)
        cases = {'help': ([cli, '--help'], (0,)), 'subcommand_help': ([cli, 'search', '--help'], (0,)),
                 'version': ([cli, '--version'], (0,)), 'bad_argument': ([cli, 'search', '--k1', 'twenty', 'q'], (2,)),
                 'toy_search': ([cli, 'search', '--preset', 'toy', QUERY], (0,))}
        out = {name: round(statistics.median(timed(cmd, env, ok) for _ in range(args.runs)), 3)
               for name, (cmd, ok) in cases.items()}
        out['toy_serve_first_answer'] = round(statistics.median(serve_first_answer(env) for _ in range(args.runs)), 3)
    finally: shutil.rmtree(tmp, ignore_errors=True)
    report = dict(benchmark='cold_start', unit='seconds, median of fresh processes', runs=args.runs,
                  targets=dict(help=1.0, bad_argument=1.0, toy_search=5.0), seconds=out,
                  met={k: out[k] < t for k, t in dict(help=1.0, bad_argument=1.0, toy_search=5.0).items()},
                  cpu=cpu(), threads=os.environ.get('OMP_NUM_THREADS'), python=platform.python_version(),
                  date=time.strftime('%Y-%m-%d'))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    tmp_out = Path(args.output).with_suffix('.tmp')
    tmp_out.write_text(json.dumps(report, indent=2) + '\n'); tmp_out.replace(args.output)
    print(json.dumps(report, indent=2))


if __name__ == '__main__': main()

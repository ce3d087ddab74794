"A stress of 1,000 queries: resident memory stays flat (benchmarks/stress.py, run as a user would)."
import json, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_a_thousand_queries_grow_memory_by_less_than_50_mb():
    done = subprocess.run([sys.executable, str(ROOT/'benchmarks'/'stress.py'), '--queries', '1000'], capture_output=True,
                          text=True, timeout=900)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result['queries'] == 1000 and result['growth_mb'] < 50, result
    assert done.returncode == 0 and result['ok']

"Test-session settings."
import os
from pathlib import Path

# Under `coverage run`, the console script the tests start in subprocesses is measured too (`patch = ["subprocess"]`);
# it runs in temporary folders, so its data goes to the project root with the rest.
os.environ.setdefault('COVERAGE_FILE', str(Path(__file__).resolve().parent.parent/'.coverage'))

"Test-session settings, and the fixture of the browser tests."
import os
from pathlib import Path
import pytest
from browser import BROWSER_REQUIRED, browser_problem

# Under `coverage run`, the console script the tests start in subprocesses is measured too (`patch = ["subprocess"]`);
# it runs in temporary folders, so its data goes to the project root with the rest.
os.environ.setdefault('COVERAGE_FILE', str(Path(__file__).resolve().parent.parent/'.coverage'))


@pytest.fixture
def needs_browser():
    "Skip the test when no browser can start, saying what to install (fail it where browser tests are required)"
    problem = browser_problem()
    if problem and BROWSER_REQUIRED: pytest.fail(problem)
    if problem: pytest.skip(problem)

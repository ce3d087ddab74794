"""Whether the browser tests can run here: they drive Chromium with Playwright (Debian's `chromium` when it is on the
PATH, else a browser `python -m playwright install chromium` fetched). Without one they skip, saying what to install;
`HYBRID_RETRIEVAL_BROWSER_TESTS=required` (CI sets it) makes a browser that cannot start a failure instead."""
import functools, os, shutil

BROWSER_REQUIRED = os.environ.get('HYBRID_RETRIEVAL_BROWSER_TESTS') == 'required'


def launch(playwright):
    "Headless Chromium: the system's when there is one, else Playwright's own"
    return playwright.chromium.launch(executable_path=shutil.which('chromium'), args=['--no-sandbox'])


@functools.cache
def browser_problem()->str|None:
    "Why headless Chromium cannot start here, in one line; None when it can"
    try:
        from playwright.sync_api import sync_playwright
        with sync_playwright() as p: launch(p).close()
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return (f'headless Chromium cannot start ({first}): install one with `apt-get install -y chromium` '
                '(or `python -m playwright install chromium`)')
    return None

"""Every notebook in `nbs/` as a test: `nbdev-test`, in a form `coverage run` can measure (`coverage run tests/notebooks.py`).
It takes `nbdev-test`'s flags; the console script itself is a shell shim under some installers (pyenv), not a Python file."""
from nbdev.test import nbdev_test

if __name__ == '__main__': nbdev_test()

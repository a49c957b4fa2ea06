"""sl's progress bar: tqdm's widget in a Jupyter kernel, its text bar anywhere else.

Like `tqdm.auto`, minus its warning where ipywidgets is missing: a kernel without
ipywidgets gets the text bar (it shows in the cell's output too), quietly. The choice is
made once, at import: a worker process spawned from a kernel imports this afresh, sees no
kernel and draws text, which its parent reads (sl/experiment/workers.py).
"""

import sys

from tqdm.std import tqdm as _text_bar

__all__ = ["tqdm"]


def _bar_class() -> type[_text_bar]:
    try:
        shell = sys.modules["IPython"].get_ipython()
        if shell is None or "IPKernelApp" not in shell.config:
            return _text_bar  # plain python, or an IPython terminal
        import ipywidgets  # noqa: F401  (the widget's parts)
    except (KeyError, AttributeError, ImportError):
        return _text_bar
    from tqdm.notebook import tqdm as notebook_bar

    return notebook_bar


tqdm = _bar_class()

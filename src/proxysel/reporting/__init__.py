"""The run as a person looks at it: ``RUN/report.html`` and ``proxysel explain``.

The package is ``reporting``, not ``report``: importing a subpackage ``proxysel.report`` would
replace the public function ``proxysel.report()`` with the module.

>>> from proxysel.reporting import write_report, explain  # doctest: +SKIP
>>> write_report("runs/r1")            # -> Path("runs/r1/report.html")
>>> print(explain("runs/r1", "ex0007"))
"""

from __future__ import annotations

from pathlib import Path

from proxysel.reporting.explain import explain
from proxysel.reporting.html import render
from proxysel.reporting.load import load_run
from proxysel.store import Run, RunFolder, atomic_write_text

__all__ = ["explain", "write_report"]


def write_report(run_dir: str | Path, *, selection: str | None = None, data: str | Path | None = None,
                 read_data: bool = True) -> Path:
    """Write ``RUN/report.html`` (atomically) and return its path.

    selection: the selection the page colours by (default: the one written last).
    data:      read the input records from here instead of the manifest's ``data.path``.
    read_data: False skips the input records (no source/format keep rates, no text previews);
               useful when the pool is large or gone.

    The run folder is locked while the page is built (the page lives in the run folder); a caller
    that already holds it open (``Run.open``) can call ``render(load_run(...))`` itself.
    """
    path = RunFolder.at(run_dir).path
    with Run.open(path, create=False) as run:
        page = render(load_run(run.path, selection=selection, data=data, read_data=read_data))
        return atomic_write_text(run.report_path, page)

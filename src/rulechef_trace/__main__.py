"""``python -m rulechef_trace``: the ``rulechef-trace`` command line."""

from rulechef_trace.cli import main

raise SystemExit(main())

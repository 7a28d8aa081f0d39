"""`python -m ekg COMMAND`: runs the command line in ekg.cli (classify, monitor, export).

Imports: cli only; each command imports what it needs when it runs.
"""
from .cli import main

raise SystemExit(main())

"""``python -m pathgen ...`` is ``pathgen ...`` (for scripts that prefer an interpreter)."""

from pathgen.cli.app import main

main()

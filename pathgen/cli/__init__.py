"""The ``pathgen`` command line: a thin typer layer over library calls."""

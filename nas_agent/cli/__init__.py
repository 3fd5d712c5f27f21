"""The `nas-agent` command line: thin commands over the package's services (main, fractals), sharing common.

Nothing here imports torch at start-up; each command imports what it runs.
"""

from nas_agent.cli.main import app, main

__all__ = ["app", "main"]

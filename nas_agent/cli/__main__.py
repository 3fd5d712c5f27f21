"""`python -m nas_agent.cli`: the same as the `nas-agent` command."""

from nas_agent.cli.main import app

app()

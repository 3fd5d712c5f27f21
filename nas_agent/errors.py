"""The one base of the errors a user causes and can fix (a bad config, a missing dataset, a wrong path).

Each says in one line what to fix; the CLI prints it and exits 2. It lives alone, with no
imports, so the command line can catch every such error without importing torch.
"""


class UserError(Exception):
    """A problem with the user's input or set-up, explained in one line."""

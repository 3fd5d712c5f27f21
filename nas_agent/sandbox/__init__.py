"""OS-level walls around sandbox children: a bubblewrap jail, seccomp filters, and a probe of what the host supports.

Nothing here imports torch: the driver builds the jail, and the child only loads filters.
"""

"""The walls around sandbox children: the bubblewrap jail (jail), seccomp filters (seccomp),
Landlock (landlock), the in-process audit hook (guard), and a probe of what the host supports (walls).

Nothing here imports torch or the trainer: the driver builds the jail, and the child loads the
in-process walls (Landlock, the exec lock, the audit hook) before candidate code.
"""

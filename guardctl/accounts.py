"""Account and group names by the kernel's ids: who a process or a peer is, never `$USER` or
`$LOGNAME`, which whoever owns the environment sets. An id with no name is its number."""

import pwd


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def group_name(gid: int) -> str:
    import grp  # only the broker names groups

    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)

"""Global options anywhere on a command line (`marsadm`, `football`): an
operator types `football migrate vm1 cluster2 --yes` as often as the other
way round, and click reads a group's options only before the command."""


def hoist_options(argv, flags, valued, keep_for=()):
    """`argv` with the options in `flags` and `valued` (with their values:
    `--opt value` or `--opt=value`) moved to the front, in their order. Not
    past a `--`, and not after a command in `keep_for` (a group whose own
    commands have options of these names)."""
    front, rest = [], []
    tokens = iter(argv)
    command = None
    for token in tokens:
        if token == "--" or command in keep_for:
            rest += [token, *tokens]
            break
        name = token.split("=", 1)[0]
        if token in flags:
            front.append(token)
        elif name in valued:
            front.append(token)
            if "=" not in token:
                front.append(next(tokens, ""))
        else:
            if command is None and not token.startswith("-"):
                command = token
            rest.append(token)
    return front + rest

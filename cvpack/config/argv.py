"""Command lines of ``KEY VALUE`` overrides mixed with flags (train.py, test.py, config.py): no torch import."""

__all__ = ['split_argv']


def _option(parser, token):
    """``(option string, takes a value)`` of the flag ``token`` spells (``--flag``, ``--flag=v``, ``-iN``, a unique
    prefix of a long flag), or None when ``token`` is not a flag of ``parser``."""
    takes = {s: a.nargs != 0 for a in parser._actions for s in a.option_strings}
    name = token.split('=', 1)[0]
    if name in takes:
        return name, takes[name] and '=' not in token
    if not token.startswith('--') and token[:2] in takes and len(token) > 2:   # -i3
        return token[:2], False
    prefixed = [s for s in takes if s.startswith('--') and s.startswith(name)] if name.startswith('--') else []
    if len(prefixed) == 1:
        return prefixed[0], takes[prefixed[0]] and '=' not in token
    return None


def split_argv(parser, argv):
    """``(flag tokens, KEY VALUE tokens)`` of a command line where flags may come before, between or after the
    overrides. A token in a KEY position is a flag when it is one of ``parser``'s (with its value, if it takes
    one); any other token there is a KEY and the next token its VALUE, whatever it looks like (``SOLVER.BASE_LR
    -1``). A KEY position token starting with '-' that is no flag goes to argparse, which rejects it by name."""
    argv = [str(a) for a in argv]
    flags, opts, i = [], [], 0
    while i < len(argv):
        token = argv[i]
        option = _option(parser, token)
        if option is not None or token.startswith('-'):
            n = 2 if option is not None and option[1] else 1
        else:
            opts.extend(argv[i:i + 2])
            i += 2
            continue
        flags.extend(argv[i:i + n])
        i += n
    return flags, opts

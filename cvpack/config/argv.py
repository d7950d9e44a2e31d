"""Command lines of ``KEY VALUE`` overrides mixed with flags (train.py, test.py, config.py): no torch import."""

__all__ = ['split_argv', 'parse_overrides', 'usage_error']


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


def _is_number(token):
    """A value such as ``-1``, ``-1e-3`` or ``-inf`` (which test.py's ``-i`` would otherwise claim as ``-i nf``):
    the schema then judges it, and names the key."""
    try:
        float(token)
    except ValueError:
        return False
    return True


def usage_error(parser, message):
    """Exit 2 with exactly one line on stderr, ``prog: error: message`` (argparse's ``parser.error`` also prints the
    usage, several lines for train.py); the message is flattened to one line."""
    parser.exit(2, '%s: error: %s\n' % (parser.prog, ' '.join(str(message).split())))


def parse_overrides(parser, argv):
    """``parser.parse_args`` of the flags of ``argv`` with the ``KEY VALUE`` tokens in ``.opts``.

    A KEY whose VALUE is missing is a usage error (exit 2, one line naming the key), not an override of the
    next KEY with a flag's name: ``train.py SOLVER.BASE_LR --no-auto-resume`` (a flag of ``parser``, or any token
    starting with '--': no config value does) and a dangling ``train.py SOLVER.BASE_LR`` at the end."""
    flags, opts = split_argv(parser, argv)
    for key, value in zip(opts[0::2], opts[1::2]):
        if not _is_number(value) and (_option(parser, value) is not None or value.startswith('--')):
            usage_error(parser, 'config key %s has no value: %s is a flag (overrides are KEY VALUE pairs, '
                                 'e.g. SOLVER.BASE_LR 1e-3)' % (key, value))
    if len(opts) % 2:
        usage_error(parser, 'config key %s has no value (it ends the command line; overrides are KEY VALUE pairs)'
                    % opts[-1])
    args = parser.parse_args(flags)
    args.opts = opts
    return args

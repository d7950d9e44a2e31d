"""Rewrite citations of the old spec files into paths inside the repo (docs/reference/).

    python tools/rewrite_citations.py            # rewrite in place, print every change
    python tools/rewrite_citations.py --check    # print what would change, write nothing (exit 1 if anything would)

Scope: comments and docstrings of the ``.py`` files under cvpack/, projects/, tests/, tools/, and the Markdown
files under projects/ and docs/ (not docs/reference/, which has its own numbering) plus README.md. A ``.py``
comment or docstring line that the rewrite pushes past 120 characters is wrapped. Code is never touched: a
rewritten ``.py`` file must parse to the same AST with docstrings blanked, or it is left alone.
Citations found in ordinary string literals are reported, not changed. Running it twice changes nothing.

Mapping rule (docs/DESIGN.md, "References"):
* ``reference_rsn_mspn.md`` -> ``docs/reference/rsn_mspn.md``; ``reference_mlpe_hsrnet_gcpose.md`` ->
  ``docs/reference/mlpe_hsrnet_gcpose.md``; section numbers are unchanged (the new files keep them).
* ``bug #N`` / ``bugs #N, #M-#P`` and ``spec §7 #N`` -> ``docs/reference/defects.md R#N`` (the RSN/MSPN spec's bug
  list is rows R#1-R#27 there). In an MLPE/HSRNet/GCPose project file such a citation is reported as unmapped.
* ``spec §X`` and a bare ``§X`` that does not continue a citation (``§1.1, §1.7`` continues one) get the document in
  front: the nearest project keyword before it on the same line (Megvii/RSN/MSPN -> rsn_mspn; MLPE/CPN/HSRNet/
  Simple Baselines/GCPose/Detectron2/ResNeSt -> mlpe_hsrnet_gcpose) for core files, else the file's family by path
  (projects, tests/projects and the core modules listed in ``PATH_FAMILY``), else the only document the file
  already names. A bare ``§X`` on a line that already names that document stays bare. Anything else is printed as
  unmapped. ``ResNeSt §3`` / ``paper §3`` (paper sections) are skipped.
"""
import argparse
import ast
import difflib
import io
import os
import re
import sys
import tokenize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = {'rsn': 'docs/reference/rsn_mspn.md', 'mlpe': 'docs/reference/mlpe_hsrnet_gcpose.md'}
DEFECTS = 'docs/reference/defects.md'
LINE_LIMIT = 120   # a comment or docstring line the rewrite makes longer than this is wrapped

# Path prefixes -> family, longest match wins. Project paths always use this; core files use it after keywords.
PATH_FAMILY = {
    'projects/RSN/': 'rsn', 'projects/MSPN/': 'rsn', 'tests/projects/rsn/': 'rsn', 'tests/projects/mspn/': 'rsn',
    'tests/projects/megvii_helpers.py': 'rsn',
    'projects/MLPE/': 'mlpe', 'projects/HSRNet/': 'mlpe', 'projects/GCPose/': 'mlpe',
    'tests/projects/mlpe/': 'mlpe', 'tests/projects/hsrnet/': 'mlpe', 'tests/projects/gcpose/': 'mlpe',
    'cvpack/engine/': 'rsn', 'cvpack/dist/': 'rsn', 'cvpack/solver/': 'rsn', 'cvpack/data/samplers.py': 'rsn',
    'cvpack/data/build.py': 'rsn', 'cvpack/data/mpii.py': 'rsn', 'cvpack/data/coco.py': 'rsn',
    'cvpack/data/transforms.py': 'rsn', 'cvpack/data/topdown.py': 'rsn', 'cvpack/data/meta.py': 'rsn',
    'cvpack/data/io.py': 'rsn',
    'cvpack/modeling/multistage.py': 'rsn', 'cvpack/modeling/megvii_blocks.py': 'rsn',
    'cvpack/modeling/layers.py': 'rsn', 'cvpack/modeling/losses/megvii.py': 'rsn', 'cvpack/decode/megvii.py': 'rsn',
    'cvpack/decode/reference.py': 'rsn', 'cvpack/evaluation/pckh.py': 'rsn', 'cvpack/evaluation/rescore.py': 'rsn',
    'cvpack/config/megvii.py': 'rsn', 'cvpack/tools/complexity.py': 'rsn', 'tools/bench_models.py': 'rsn',
    'tests/engine/': 'rsn', 'tests/modeling/test_layers.py': 'rsn', 'tests/modeling/test_complexity.py': 'rsn',
    'tests/modeling/test_megvii_loss.py': 'rsn', 'tests/decode/': 'rsn', 'tests/evaluation/': 'rsn',
    'docs/ENGINE.md': 'rsn', 'docs/SPEED.md': 'rsn',
    'cvpack/ops/': 'mlpe', 'tests/ops/': 'mlpe', 'cvpack/data/cpn.py': 'mlpe', 'cvpack/data/detection/': 'mlpe',
    'cvpack/config/cpn.py': 'mlpe', 'cvpack/config/simple_baselines.py': 'mlpe', 'cvpack/config/detection.py': 'mlpe',
    'cvpack/modeling/backbones/': 'mlpe', 'cvpack/modeling/deconv_head.py': 'mlpe',
    'cvpack/modeling/losses/joints_mse.py': 'mlpe', 'tests/modeling/test_resnest.py': 'mlpe',
}
KEYWORDS = [
    ('rsn', re.compile(r'\b(?:Megvii|megvii|RSN|MSPN|Res18|RSB)\b')),
    ('mlpe', re.compile(r'\b(?:MLPE|CPN|HSRNet|HSR-MSNet|Simple Baselines|simple_baselines|GCPose|Detectron2|'
                        r'ResNeSt)\b')),
]

OLD_DOC = re.compile(r'(?<![\w/])reference_(rsn_mspn|mlpe_hsrnet_gcpose)\.md')
SEC = r'§\s?\d+(?:\.\d+)*(?:-\d+(?:\.\d+)*)?'
NEW_DOC = r'docs/reference/(?:rsn_mspn|mlpe_hsrnet_gcpose)\.md'
SPEC_BUG = re.compile(r'(?:(?:' + NEW_DOC + r')`{0,2}\s+|\bspec\s+)?§\s?7\s+#(\d+)')
BUGS = re.compile(r'\b[Bb]ugs?\s+#\d+(?:\s*(?:,|-|–|/|and|or)\s*#\d+)*')
CHAIN = re.compile(r'(?P<doc>' + NEW_DOC + r'`{0,2}\s*)?(?P<spec>\bspec\s+)?(?P<sec>' + SEC + ')')
CONTINUES = re.compile(r'^(?:\s*(?:"[^"\n]*"|items?|steps?|\d+|-|,|/|and|or|&))*\s*$')
SKIP_BEFORE = re.compile(r'(?:ResNeSt|paper|Paper)\s*$')
OTHER_SPECS = re.compile(r'ecosystem_and_style\.md|shared/specs')


def path_family(rel):
    best = None
    for prefix, fam in PATH_FAMILY.items():
        if rel.startswith(prefix) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, fam)
    return best[1] if best else None


class Rewriter:
    def __init__(self, rel, full_text):
        self.rel = rel
        self.project = rel.startswith(('projects/', 'tests/projects/'))
        self.path_fam = path_family(rel)
        named = {f for f, d in (('rsn', 'rsn_mspn.md'), ('mlpe', 'mlpe_hsrnet_gcpose.md')) if d in full_text}
        self.named_fam = named.pop() if len(named) == 1 else None
        self.unmapped = []
        self.count = 0

    def family(self, text, pos):
        line_start = text.rfind('\n', 0, pos) + 1
        before = text[line_start:pos]
        if not self.project:
            hits = [(m.end(), fam) for fam, rx in KEYWORDS for m in rx.finditer(before)]
            if hits:
                return max(hits)[1]
        return self.path_fam or self.named_fam

    def note(self, text, pos, what):
        line = text[text.rfind('\n', 0, pos) + 1:].split('\n', 1)[0].strip()
        self.unmapped.append('%s: %s: %s' % (self.rel, what, line[:140]))

    def rewrite(self, text):
        text, n = OLD_DOC.subn(lambda m: 'docs/reference/%s.md' % m.group(1), text)
        self.count += n

        def spec_bug(m):
            self.count += 1
            return '%s R#%s' % (DEFECTS, m.group(1))
        text = SPEC_BUG.sub(spec_bug, text)

        def bugs(m):
            if self.project and self.path_fam == 'mlpe':
                self.note(text, m.start(), 'bug number in an MLPE/HSRNet/GCPose file (which list?)')
                return m.group(0)
            self.count += 1
            nums = re.sub(r'#(\d+)', r'R#\1', m.group(0).split(None, 1)[1])
            return '%s %s' % (DEFECTS, nums)
        text = BUGS.sub(bugs, text)

        out, last, prev_end = [], 0, None
        for m in CHAIN.finditer(text):
            start = m.start()
            if m.group('doc'):
                prev_end = m.end()
                continue
            if m.group('spec') is None:
                if prev_end is not None and CONTINUES.match(text[prev_end:start]):
                    prev_end = m.end()
                    continue
                if SKIP_BEFORE.search(text[max(0, start - 12):start]):
                    prev_end = None
                    continue
            fam = self.family(text, start)
            if fam is None:
                self.note(text, start, 'cannot tell which spec %r means' % m.group(0))
                prev_end = m.end()
                continue
            done = ''.join(out) + text[last:start]
            if m.group('spec') is None and DOCS[fam] in done[done.rfind('\n') + 1:]:
                prev_end = m.end()   # the line already names this document: the bare section refers to it
                continue
            out.append(text[last:start])
            out.append('%s %s' % (DOCS[fam], m.group('sec')))
            self.count += 1
            last = prev_end = m.end()
        out.append(text[last:])
        text = ''.join(out)
        for m in OTHER_SPECS.finditer(text):
            self.note(text, m.start(), 'names a spec with no docs/reference counterpart')
        return text


def _docstring_spans(tree):
    spans = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            spans.append(((node.lineno, node.col_offset), (node.end_lineno, node.end_col_offset)))
    return spans


def _split(line, room):
    """Index of the last space at or before ``room`` that has text on both sides, or None."""
    lead = len(line) - len(line.lstrip())
    lead += 2 if line[lead:].startswith(('# ', '* ', '- ')) else 0
    cut = line.rfind(' ', lead + 1, room + 1)
    return cut if cut > lead and line[:cut].strip() and line[cut:].strip() else None


def _mergeable(nxt, cont):
    """Whether a docstring's next line continues the same prose paragraph at indentation ``cont``."""
    body = nxt.strip()
    return (bool(body) and nxt[:len(nxt) - len(nxt.lstrip())] == cont and not body.endswith('::')
            and not body.startswith(('* ', '- ', '>>>', ':', '"""', "'''", '|', '..')))


def _wrap_token(old, new, col, comment):
    """Wrap the lines of a rewritten comment/docstring that the rewrite pushed past LINE_LIMIT characters.

    A comment continues on the next line as a comment starting at the same column; a docstring line continues with
    its own indentation (two more after a ``*``/``-`` bullet), and the left-over words join the next line when it
    continues the same paragraph. Lines the rewrite did not change are kept as they are.
    """
    olds, news = old.split('\n'), new.split('\n')
    out, carry = [], None
    for i, (a, b) in enumerate(zip(olds, news)):
        start = col if i == 0 else 0
        if carry is not None:
            a, b, carry = None, carry + ' ' + b.lstrip(), None
        if a == b or start + len(b) <= LINE_LIMIT:
            out.append(b)
            continue
        if comment:
            cont = ' ' * col + '# '
        else:
            body = b[3:] if i == 0 and b[:3] in ('"""', "'''") else b
            indent = ' ' * col if i == 0 else b[:len(b) - len(b.lstrip())]
            cont = indent + ('  ' if body.lstrip().startswith(('* ', '- ')) else '')
        line, wrapped = b, False
        while start + len(line) > LINE_LIMIT:
            cut = _split(line, LINE_LIMIT - start)
            if cut is None:
                break
            out.append(line[:cut].rstrip())
            line, start, wrapped = cont + line[cut + 1:].lstrip(), 0, True
        if wrapped and not comment and i + 1 < len(news) and _mergeable(news[i + 1], cont):
            carry = line.rstrip()
        else:
            out.append(line)
    return '\n'.join(out)


def _blank_docstrings(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            node.value.value = ''
    return ast.dump(tree)


def rewrite_python(rel, src):
    tree = ast.parse(src)
    spans = _docstring_spans(tree)
    rw = Rewriter(rel, src)
    offsets = [0]
    for line in src.splitlines(keepends=True):
        offsets.append(offsets[-1] + len(line))
    edits = []
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        is_doc = tok.type == tokenize.STRING and any(a <= tok.start and tok.end <= b for a, b in spans)
        if tok.type == tokenize.COMMENT or is_doc:
            new = rw.rewrite(tok.string)
            if new != tok.string:
                new = _wrap_token(tok.string, new, tok.start[1], tok.type == tokenize.COMMENT)
                a = offsets[tok.start[0] - 1] + tok.start[1]
                b = offsets[tok.end[0] - 1] + tok.end[1]
                edits.append((a, b, new))
        elif tok.type == tokenize.STRING and (OLD_DOC.search(tok.string) or re.search(r'spec §|[Bb]ug #', tok.string)):
            rw.note(tok.string, 0, 'line %d: citation inside a code string, left alone' % tok.start[0])
    out = src
    for a, b, new in reversed(edits):
        out = out[:a] + new + out[b:]
    if out != src and _blank_docstrings(ast.parse(src)) != _blank_docstrings(ast.parse(out)):
        rw.unmapped.append('%s: rewrite would change code, file left alone' % rel)
        return src, rw.unmapped, 0
    return out, rw.unmapped, (rw.count if out != src else 0)


def rewrite_markdown(rel, src):
    rw = Rewriter(rel, src)
    return rw.rewrite(src), rw.unmapped, rw.count


def targets(root):
    for top in ('cvpack', 'projects', 'tests', 'tools', 'docs'):
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, top)):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith('.') and d != '__pycache__')
            rel_dir = os.path.relpath(dirpath, root).replace(os.sep, '/')
            if rel_dir == 'docs/reference' or rel_dir.startswith('docs/reference/'):
                continue
            for name in sorted(filenames):
                rel = '%s/%s' % (rel_dir, name)
                if rel == 'tools/rewrite_citations.py':
                    continue
                if name.endswith('.py') and top != 'docs':
                    yield rel
                elif name.endswith('.md') and top in ('projects', 'docs'):
                    yield rel
    if os.path.exists(os.path.join(root, 'README.md')):
        yield 'README.md'


def _changed_lines(old, new):
    """(first old line number, old lines, new lines) for every changed block."""
    a, b = old.splitlines(), new.splitlines()
    blocks = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    return [(i1 + 1, a[i1:i2], b[j1:j2]) for tag, i1, i2, j1, j2 in blocks if tag != 'equal']


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--check', action='store_true', help='report only, write nothing')
    parser.add_argument('--root', default=ROOT, help='repository root (default: this checkout)')
    args = parser.parse_args(argv)
    n_files = n_lines = n_cites = 0
    unmapped = []
    for rel in targets(args.root):
        path = os.path.join(args.root, rel)
        with open(path, encoding='utf-8') as f:
            src = f.read()
        new, notes, count = (rewrite_python if rel.endswith('.py') else rewrite_markdown)(rel, src)
        unmapped += notes
        n_cites += count
        if new == src:
            continue
        n_files += 1
        for no, xs, ys in _changed_lines(src, new):
            n_lines += len(xs)
            print('%s:%d' % (rel, no))
            print('\n'.join(['  - ' + x for x in xs] + ['  + ' + y for y in ys]))
        if not args.check:
            with open(path, 'w', encoding='utf-8') as f:
                f.write(new)
    print('%s %d citations on %d lines in %d files'
          % ('would rewrite' if args.check else 'rewrote', n_cites, n_lines, n_files))
    if unmapped:
        print('not mapped (%d):' % len(unmapped))
        for u in unmapped:
            print('  ' + u)
    return 1 if args.check and n_files else 0


if __name__ == '__main__':
    sys.exit(main())

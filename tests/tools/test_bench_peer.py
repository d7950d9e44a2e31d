"""tools/bench_models.py's peer comparison plumbing (no timing): the mmpose side process's serve protocol is
read back, a failing side process is an error, rounds interleave the paths, and the goal table compares the
fastest fp32 path with mmpose and the floor."""
import io
import json
import sys

import pytest


@pytest.fixture(scope='module')
def bench(load_tool):
    return load_tool('bench_models')


def test_mmpose_side_process_answers_each_request(bench, tmp_path):
    side = tmp_path / 'side.py'
    side.write_text('import json, sys\nprint("ready", flush=True)\nfor line in sys.stdin:\n'
                    '    what, name = line.split()\n'
                    '    print(json.dumps({"wall": len(name) + (what == "train"), "cpu": 0.5}), flush=True)\n')
    peer = bench.MmposeSide(sys.executable, 2, side=str(side))
    try:
        assert peer('infer', 'RSN18') == (5, 0.5)
        assert peer('train', 'MSPN2stg') == (9, 0.5)
    finally:
        peer.close()
    bad = tmp_path / 'bad.py'
    bad.write_text('import sys\nsys.exit(1)\n')
    with pytest.raises(RuntimeError, match='did not start'):
        bench.MmposeSide(sys.executable, 2, side=str(bad))


def test_side_serve_protocol(load_tool):
    side = load_tool('bench_mmpose_side')

    class Runner:
        def timed(self, what, name):
            return {'wall': {'infer': 1.0, 'train': 3.0}[what], 'cpu': float(len(name))}
    out = io.StringIO()
    side.serve(Runner(), ['infer RSN18\n', '\n', 'train 4xRSN18\n'], out)
    lines = out.getvalue().splitlines()
    assert lines[0] == 'ready'
    assert [json.loads(x) for x in lines[1:]] == [{'wall': 1.0, 'cpu': 5.0}, {'wall': 3.0, 'cpu': 7.0}]


def test_interleave_rotates_rounds_and_summarises(bench):
    calls = []

    def variant(label, walls):
        it = iter(walls)
        return lambda: calls.append(label) or (next(it), 0.1)
    stats = bench.interleave({'a': variant('a', [9, 1, 2, 3]), 'b': variant('b', [9, 4, 6, 5])}, runs=3)
    assert calls == ['a', 'b',  'a', 'b',  'b', 'a',  'a', 'b']     # one warm-up each, then rotating rounds
    assert (stats['a']['median'], stats['a']['min'], stats['a']['cpu']) == (2, 1, 0.1)
    assert (stats['b']['median'], stats['b']['min']) == (5, 4)


def test_peer_goals_use_the_fastest_fp32_path(bench, capsys):
    def st(t):
        return {'median': t, 'min': t, 'cpu': t, 'load': '1.0/1.0'}
    res = {'infer': {'mmpose 1.3.2 eager': st(0.50), 'fp32-cl': st(0.45), 'fp32-cl+fold': st(0.40),
                     'fp32+onnxruntime': st(0.25), 'bf16-cl': st(0.10)},
           'eval_gmacs': 15.0}   # the eval forward's MACs: the eval floor
    bench.print_peer_goals({'RSN18': (res, 18.0)}, {}, {'fp32': 60.0})
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith('| RSN18')][0]
    assert line == ('| RSN18 | 0.500 | 0.250 | fp32+onnxruntime | 2.00x | 0.300 | 0.83x | 0.250 | 1.00x | '
                    'no: 0.250 s < floor |')
    # a time given on the command line stands in when the run did not time mmpose
    del res['infer']['mmpose 1.3.2 eager']
    res['eval_gmacs'] = 3.0
    bench.print_peer_goals({'RSN18': (res, 6.0)}, {'RSN18': 0.8}, {'fp32': 60.0})
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith('| RSN18')][0]
    assert line == '| RSN18 | 0.800 | 0.250 | fp32+onnxruntime | 3.20x | 0.100 | 2.50x | 0.050 | 5.00x | yes |'

"""tools/bench_models.py's peer comparison plumbing (no timing): the side environment's JSON is read back,
a failing side run is an error with its stderr, and the table compares the fastest fp32 path."""
import os.path as osp
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@pytest.fixture(scope='module')
def bench(load_tool):
    return load_tool('bench_models')


def test_run_mmpose_reads_the_side_json(bench, tmp_path):
    side = tmp_path / 'side.py'
    side.write_text('import json, sys\nprint("log line")\nmodels = sys.argv[2:sys.argv.index("--runs")]\n'
                    'print(json.dumps({m: {"infer": 0.5 + i} for i, m in enumerate(models)}))\n')
    assert bench.run_mmpose(sys.executable, ['RSN18', 'MSPN2stg'], 3, 2, side=str(side)) == \
        {'RSN18': 0.5, 'MSPN2stg': 1.5}
    bad = tmp_path / 'bad.py'
    bad.write_text('import sys\nsys.stderr.write("no mmpose here")\nsys.exit(1)\n')
    with pytest.raises(RuntimeError, match='no mmpose here'):
        bench.run_mmpose(sys.executable, ['RSN18'], 3, 2, side=str(bad))


def test_print_peer_uses_the_fastest_fp32_path(bench, capsys):
    rows = [('fp32-cl', 2.0, 0.50), ('fp32-cl+fold', None, 0.40), ('fp32+onnxruntime', None, 0.25),
            ('bf16-cl', 1.0, 0.10)]
    bench.print_peer({'RSN18': (rows, 18.0)}, {'RSN18': 0.60}, {'fp32': 60.0})
    line = [l for l in capsys.readouterr().out.splitlines() if l.startswith('| RSN18')][0]
    assert line == '| RSN18 | 0.600 | 0.250 | fp32+onnxruntime | 2.40x | 0.300 | 0.83x |'

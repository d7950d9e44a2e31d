"""tools/bench_data.py's plumbing (no timing asserted): the records handed to mmpose's side process, the chunk
protocol with that process, the interleaved rates and the printed ratios."""
import json
import os
import sys

import numpy as np
import pytest

from cvpack.config.megvii import megvii_config
from cvpack.data import build_dataset


@pytest.fixture(scope='module')
def bench(load_tool):
    return load_tool('bench_data')


@pytest.fixture(scope='module')
def megvii_train(coco_subset, tmp_path_factory):
    cfg = megvii_config(str(tmp_path_factory.mktemp('exp')))
    cfg.DATASET.ROOT = coco_subset
    return build_dataset(cfg, 'train')


def test_mmpose_records_are_mmposes_coco_instances(bench, megvii_train):
    spec = bench._mmpose_records(megvii_train)
    assert len(spec['records']) == len(megvii_train) == 86
    for rec, r in zip(megvii_train.records, spec['records']):
        x, y, w, h = (float(v) for v in rec['bbox'])
        # mmpose's CocoDataset: xywh -> xyxy clipped to [0, size - 1]; visibility min(v, 1)
        want = [np.clip(x, 0, rec['width'] - 1), np.clip(y, 0, rec['height'] - 1),
                np.clip(x + w, 0, rec['width'] - 1), np.clip(y + h, 0, rec['height'] - 1)]
        assert r['bbox'] == pytest.approx(want)
        assert r['visible'] == np.minimum(rec['joints'][:, 2], 1).tolist()
        assert r['keypoints'] == rec['joints'][:, :2].tolist() and r['img_path'] == rec['image_path']
    json.dumps(spec)   # what the side process reads


def test_side_process_chunks_rates_and_report(bench, megvii_train, tmp_path, capsys):
    side = tmp_path / 'side.py'
    # a stand-in for bench_mmpose_data_side.py: 10 ms of CPU a sample, reads the records it was given
    side.write_text('import json, sys\nn = len(json.load(open(sys.argv[1]))["records"])\n'
                    'assert sys.argv[2:] == ["--kernels", "15", "5"], sys.argv\nprint("ready mmpose 9.9", flush=True)\n'
                    'for line in sys.stdin:\n    if line.strip() == "quit": break\n'
                    '    a, b = map(int, line.split())\n'
                    '    print(json.dumps({"wall": 0.02 * (b - a), "cpu": 0.01 * (b - a)}), flush=True)\n')
    peer = bench.MMPoseSide(sys.executable, megvii_train, [15, 5], side=str(side))
    assert peer.version == '9.9' and os.path.isfile(peer.tmp.name)
    ours = lambda a, b: (0.005 * (b - a), 0.004 * (b - a))   # noqa: E731  (250 / CPU-s)
    try:
        rates = bench._rates({'megvii': ours, 'megvii mmpose': peer}, 40, 4)
    finally:
        peer.close()
    assert not os.path.exists(peer.tmp.name)
    assert rates['megvii mmpose'] == pytest.approx((50.0, 50.0, 100.0))
    assert rates['megvii'] == pytest.approx((200.0, 200.0, 250.0))
    bench._report(rates, peer.version)
    assert 'megvii vs mmpose 9.9 top-down pipeline: 4.00x best chunk, 4.00x median, 2.50x per CPU-s' \
        in capsys.readouterr().out


def test_side_process_that_fails_is_an_error(bench, megvii_train, tmp_path):
    bad = tmp_path / 'bad.py'
    bad.write_text('import sys\nsys.stderr.write("no mmpose here\\n")\nsys.exit(1)\n')
    with pytest.raises(RuntimeError, match='stopped'):
        bench.MMPoseSide(sys.executable, megvii_train, [15], side=str(bad))

"""``cvpack.tools.complexity`` on the whole-image detection exps: params + per-part MACs, hand-counted."""
import os.path as osp

import pytest

from cvpack.tools.complexity import complexity, main


def _exp(repo_root, name):
    return osp.join(repo_root, 'projects', 'GCPose', 'exps', name)


def test_gcpose_parts_hand_counted(repo_root, capsys):
    res = complexity(_exp(repo_root, 'gcpose.R50.coco'))
    assert res['params'] == 66754790                         # README: 66.75 M
    parts = res['parts']
    # keypoint head per 14 x 14 RoI (convs only, bias excluded): 1x1 256->512 projection, 8 3x3 512->512 convs,
    # ConvTranspose 512->17 k4 over 14x14 inputs, per GCM a 1x1 512->1024 (q, k), 1x1 512->512 (v), 3x3 512->512.
    px = 14 * 14
    gcm = px * 512 * (1024 + 512 + 512 * 9)
    kp = px * 512 * 256 + 8 * px * 512 * 512 * 9 + px * 512 * 17 * 16 + 2 * gcm
    assert parts['keypoint head per RoI'] == {'gmacs': pytest.approx(kp / 1e9, abs=1e-12), 'calls': 100}
    box = 256 * 49 * 1024 + 1024 * 1024 + 1024 * (2 + 4)     # fc1, fc2, cls (person + bg), box deltas
    assert parts['box head per RoI'] == {'gmacs': pytest.approx(box / 1e9, abs=1e-12), 'calls': 1000}
    # a 480 x 640 image at short side 800: 800 x 1067, padded to 800 x 1088
    assert 'backbone+FPN 800x1088' in parts
    total = sum(p['gmacs'] * p['calls'] for p in parts.values())
    assert res['gmacs'] == pytest.approx(total)
    main([_exp(repo_root, 'keypoint_rcnn.R50.coco'), '--json'])
    out = capsys.readouterr().out
    assert '"params": 59133158' in out and '3.495460864' in out   # stock head: 3.50 GMACs per RoI


def test_no_input_shape_is_a_clear_error(tmp_path):
    (tmp_path / 'config.py').write_text('from easydict import EasyDict\n'
                                        'cfg = EasyDict(MODEL=EasyDict(PRETRAINED=None, WEIGHT=None), '
                                        'DATASET=EasyDict(PIPELINE="whole_image"))\n')
    (tmp_path / 'network.py').write_text('import torch\ndef build_model(cfg):\n    return torch.nn.Conv2d(3, 1, 1)\n')
    with pytest.raises(ValueError, match='no INPUT_SHAPE.*whole_image'):
        complexity(str(tmp_path))

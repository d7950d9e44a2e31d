"""A Detectron2 zoo ``.pkl`` through the core entry points (convert CLI, build_model_with_weights): the GCPose
format plug-in (MODEL.WEIGHT_FORMATS) is found by 'auto', its settings travel with the converted file."""
import json
import os.path as osp
import pickle

import numpy as np
import torch

from cvpack.safe_load import load_file
from cvpack.tools import convert as convert_cli
from cvpack.weights import build_model_with_weights

HERE = osp.dirname(osp.abspath(__file__))
EXP = osp.join(HERE, '..', '..', 'projects', 'GCPose', 'exps', 'keypoint_rcnn.R50.coco')


def _zoo_pkl(path):
    with open(osp.join(HERE, '..', 'data', 'detectron2_keypoint_rcnn_manifest.json')) as f:
        keys = json.load(f)['variants']['zoo_R50']
    rng = np.random.default_rng(0)
    arrays = {k: (rng.random(s, dtype=np.float32) + 0.5) for k, s in keys.items()
              if not k.endswith('num_batches_tracked')}
    with open(path, 'wb') as f:
        pickle.dump({'model': arrays, '__author__': 'Detectron2 Model Zoo', 'matching_heuristics': True}, f)
    return arrays


def test_detectron2_pkl_converts_and_loads_through_the_core(tmp_path, capsys):
    arrays = _zoo_pkl(tmp_path / 'model_final.pkl')
    out = tmp_path / 'kprcnn.pth'
    convert_cli.main([str(tmp_path / 'model_final.pkl'), '--exp', EXP, '--out', str(out)])
    printed = capsys.readouterr().out
    assert 'detectron2' in printed and '__author__' in printed
    saved = load_file(str(out))
    assert saved['cfg_overrides']['MODEL.RESNET.STRIDE_IN_1X1'] is True
    assert saved['cfg_overrides']['INPUT.PIXEL_STD'] == [1.0, 1.0, 1.0]
    # the converted file and the raw .pkl build the same model, with the Detectron2 settings applied
    cfg_a, model_a, prep_a = build_model_with_weights(EXP, str(out))
    cfg_b, model_b, prep_b = build_model_with_weights(EXP, str(tmp_path / 'model_final.pkl'))
    assert prep_b.format == 'detectron2'
    assert cfg_a.MODEL.RESNET.STRIDE_IN_1X1 and cfg_b.MODEL.RESNET.STRIDE_IN_1X1
    assert cfg_b.DATASET.COLOR_RGB is False
    a, b = model_a.state_dict(), model_b.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    stem = torch.from_numpy(arrays['backbone.bottom_up.stem.conv1.weight'])
    assert any(torch.equal(v, stem) for v in a.values())

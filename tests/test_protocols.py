"""The engine's optional hooks (cvpack/protocols.py): which shipped classes provide them, with the protocol's
signature, and that the engine's checks go through the protocols."""
import inspect
import logging

import pytest
import torch

from cvpack.protocols import (AspectRatioGrouped, ComplexityParts, DetectionStats, GroundTruthCheck, MetricNames,
                              PretrainedInit)
from tests.projects.megvii_helpers import SMALL, build


def _params(fn):
    return [p.name for p in inspect.signature(fn).parameters.values()]


def _implementations():
    from cvpack.evaluation.build import CocoEvaluator, MpiiEvaluator
    from projects.GCPose.gcpose.data.dataset import DetectionDataset
    from projects.GCPose.gcpose.evaluator import DetectionEvaluator
    from projects.GCPose.gcpose.model import KeypointRCNN
    from projects.HSRNet.hsrnet.model import HSRNetPose
    from projects.MLPE.mlpe.model import MLPE
    from projects.MSPN.mspn import MSPN
    return [(PretrainedInit, 'load_pretrained', [MSPN, MLPE, HSRNetPose, KeypointRCNN]),
            (ComplexityParts, 'complexity_parts', [KeypointRCNN]),
            (AspectRatioGrouped, 'aspect_ratio_flags', [DetectionDataset]),
            (MetricNames, 'metric_names', [CocoEvaluator, MpiiEvaluator, DetectionEvaluator]),
            (GroundTruthCheck, 'check_ground_truth', [CocoEvaluator, MpiiEvaluator, DetectionEvaluator])]


def test_shipped_hooks_have_the_protocol_signature():
    for proto, name, classes in _implementations():
        for cls in classes:
            assert issubclass(cls, proto), (cls, proto)
            assert _params(getattr(cls, name)) == _params(getattr(proto, name)), (cls, name)


def test_models_with_and_without_imagenet_init():
    with torch.device('meta'):
        _, mspn = build('MSPN', 'mspn.1xstg.coco', SMALL['COCO'])
        _, rsn = build('RSN', 'RSN18.coco', SMALL['COCO'])
    assert isinstance(mspn, PretrainedInit) and not isinstance(rsn, PretrainedInit)
    assert not isinstance(mspn, ComplexityParts)
    assert 'load_pretrained' not in vars(mspn)      # a method of the class, not patched onto the instance

    class NoInit(torch.nn.Module):
        load_pretrained = None                      # explicitly none (as a subclass may say)
    assert not isinstance(NoInit(), PretrainedInit)


def test_det_stats_logged_only_for_datasets_that_have_them(caplog):
    from cvpack.engine.tester import _log_det_stats

    class FromDetections:
        det_stats = {'low_score': 3, 'unknown_image': 1}

    class FromGT:
        pass
    assert isinstance(FromDetections(), DetectionStats) and not isinstance(FromGT(), DetectionStats)
    log = logging.getLogger('test_protocols')
    with caplog.at_level(logging.INFO, logger='test_protocols'):
        _log_det_stats(FromGT(), log)
        assert caplog.text == ''
        _log_det_stats(FromDetections(), log)
    assert 'detections skipped: 3 below TEST.DET_SCORE_THRESH, 0 of another category, 1 on images' in caplog.text


def test_mlpe_constructor_is_keyword_only():
    from projects.MLPE.mlpe.model import MLPE
    with pytest.raises(TypeError):
        MLPE('resnest50', 17)
    assert all(p.kind is p.KEYWORD_ONLY for p in list(inspect.signature(MLPE).parameters.values()))

"""ONNX export of GCPose's keypoint head (docs/EXPORT.md): the part of the whole-image detector that exports.

The whole Keypoint R-CNN does not go through ``torch.onnx.export`` (dynamo): its RPN and box-head NMS
(cvpack.ops.nms, exact greedy NMS in torch + numpy, no compiled op) keep a data-dependent number of boxes and
leave torch for numpy, which torch.export cannot trace; the RoIAlign pooling loops over boxes per FPN level.
The head is a plain convolutional network on RoI features, so it exports like the top-down networks:

    python -m projects.GCPose.gcpose.export EXP_DIR --weights W [--dynamic-batch] [--out F]

``features`` (R, 256, P, P) RoIAlign features of the x1.3 keypoint boxes (P = POOLER_RESOLUTION, 14) ->
``heatmaps`` (R, K, 4P, 4P) logits; the torch backbone, RPN, box head, pooling and
``heatmaps_to_keypoints`` decoding run around it.
"""
import argparse
import os.path as osp

import torch

from cvpack.tools.export import export_onnx, load_for_export, onnx_op_counts, verify_onnx

__all__ = ['export_keypoint_head', 'main']


def export_keypoint_head(model, cfg, path, dynamic_batch=False, batch=1):
    """Write ``model.roi_heads.keypoint_head`` (eval) to ``path``; returns (path, (C, P, P) of its input)."""
    head = model.roi_heads.keypoint_head.eval()
    pool = int(cfg.MODEL.ROI_KEYPOINT_HEAD.POOLER_RESOLUTION)
    channels = head.input_proj.in_channels if head.input_proj is not None else head.convs[0].in_channels
    export_onnx(head, path, (pool, pool), dynamic_batch, 'torchscript', batch, channels=channels,
                names=('features', 'heatmaps'))
    return path, (channels, pool, pool)


def main(argv=None):
    parser = argparse.ArgumentParser(description='Export the keypoint head of a GCPose / Keypoint R-CNN exp to ONNX')
    parser.add_argument('exp_dir')
    parser.add_argument('--weights', help='checkpoint (default: the random init)')
    parser.add_argument('--dynamic-batch', action='store_true', help='symbolic number of RoIs R')
    parser.add_argument('--out', help='default: EXP_DIR/<exp>.keypoint_head.onnx')
    args, opts = parser.parse_known_args(argv)
    with torch.no_grad():   # (not torch.set_grad_enabled(False): main() is also called in-process)
        return _export_head(args, opts)


def _export_head(args, opts):
    cfg, model = load_for_export(args.exp_dir, args.weights, ['MODEL.PRETRAINED', ''] + opts)
    out = args.out or osp.join(args.exp_dir, osp.basename(osp.normpath(args.exp_dir)) + '.keypoint_head.onnx')
    path, chw = export_keypoint_head(model, cfg, out, args.dynamic_batch)
    n = 3 if args.dynamic_batch else 1
    features = torch.randn((n,) + chw, generator=torch.Generator().manual_seed(0))
    diff = verify_onnx(path, model.roi_heads.keypoint_head, features)
    print('wrote %s (%d nodes, Conv %d); onnxruntime vs eager: max |difference| %.2e'
          % (path, sum(onnx_op_counts(path).values()), onnx_op_counts(path).get('Conv', 0), diff))
    return path


if __name__ == '__main__':
    main()

"""ONNX export of GCPose's keypoint head (docs/EXPORT.md): the part of the whole-image detector that exports.

The whole Keypoint R-CNN does not go through ``torch.onnx.export`` (dynamo): its RPN and box-head NMS
(cvpack.ops.nms, exact greedy NMS in torch + numpy, no compiled op) keep a data-dependent number of boxes and
leave torch for numpy, which torch.export cannot trace; the RoIAlign pooling loops over boxes per FPN level.
The head is a plain convolutional network on RoI features, so it exports like the top-down networks:

    python -m projects.GCPose.gcpose.export EXP_DIR (--weights W | --random-init) [--dynamic-batch] [--out F]

``features`` (R, 256, P, P) RoIAlign features of the x1.3 keypoint boxes (P = POOLER_RESOLUTION, 14) ->
``heatmaps`` (R, K, 4P, 4P) logits; the torch backbone, RPN, box head, pooling and
``heatmaps_to_keypoints`` decoding run around it.
"""
import torch

from cvpack.tools._cli import OneLineParser, atomic_output, die
from cvpack.tools.export import check_export_args, export_onnx, load_or_exit, onnx_op_counts, verify_onnx

__all__ = ['export_keypoint_head', 'main']

PROG = 'python -m projects.GCPose.gcpose.export'


def export_keypoint_head(model, cfg, path, dynamic_batch=False, batch=1):
    """Write ``model.roi_heads.keypoint_head`` (eval) to ``path``; returns (path, (C, P, P) of its input)."""
    head = model.roi_heads.keypoint_head.eval()
    pool = int(cfg.MODEL.ROI_KEYPOINT_HEAD.POOLER_RESOLUTION)
    channels = head.input_proj.in_channels if head.input_proj is not None else head.convs[0].in_channels
    export_onnx(head, path, (pool, pool), dynamic_batch, 'torchscript', batch, channels=channels,
                names=('features', 'heatmaps'))
    return path, (channels, pool, pool)


def main(argv=None):
    """Export as the command line asks (the same argument checks as cvpack.tools.export); returns the path."""
    parser = OneLineParser(prog=PROG, description='Export the keypoint head of a GCPose / Keypoint R-CNN exp to ONNX')
    parser.add_argument('exp_dir')
    init = parser.add_mutually_exclusive_group(required=True)
    init.add_argument('--weights', help='checkpoint')
    init.add_argument('--random-init', action='store_true', help="export the exp's random initialisation")
    parser.add_argument('--dynamic-batch', action='store_true', help='symbolic number of RoIs R')
    parser.add_argument('--out', help='default: EXP_DIR/<exp>.keypoint_head.onnx')
    args, opts = parser.parse_known_args(argv)
    args.out = check_export_args(parser, args.exp_dir, args.weights, args.out, '.keypoint_head.onnx')
    with torch.no_grad():   # (not torch.set_grad_enabled(False): main() is also called in-process)
        return _export_head(args, opts)


def _export_head(args, opts):
    cfg, model = load_or_exit(args.exp_dir, args.weights, ['MODEL.PRETRAINED', ''] + opts, PROG)
    n = 3 if args.dynamic_batch else 1
    with atomic_output(args.out) as tmp:
        _, chw = export_keypoint_head(model, cfg, tmp, args.dynamic_batch)
        features = torch.randn((n,) + chw, generator=torch.Generator().manual_seed(0))
        try:
            diff = verify_onnx(tmp, model.roi_heads.keypoint_head, features)
        except AssertionError as e:   # names the temporary file, removed on the way out
            die('%s: error: %s not written: %s' % (PROG, args.out, str(e).split(': ', 1)[-1]), code=1)
        ops = onnx_op_counts(tmp)
    print('wrote %s (%d nodes, Conv %d); onnxruntime vs eager: max |difference| %.2e'
          % (args.out, sum(ops.values()), ops.get('Conv', 0), diff))
    return args.out


if __name__ == '__main__':
    main()

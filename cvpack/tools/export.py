"""Export an exp's pose network to ONNX, BatchNorm folded, checked against the eager model (docs/EXPORT.md).

    python -m cvpack.tools.export EXP_DIR (--weights W | --random-init) --format onnx [--dynamic-batch] [--out F]

The exported graph has the eval forward contract of the top-down networks: ``images`` (N, 3, H, W), the
normalised crops at cfg.INPUT_SHAPE, to ``heatmaps`` (N, K, H/4, W/4) on the crop's stride-4 grid. Flip
test, decoding and mapping back stay outside, in cvpack (the same code as the torch path):
:class:`cvpack.inference.onnx.OnnxHeatmapModel` runs the file with onnxruntime behind that contract.

BatchNorm is folded before export, in a copy of the model: the ConvBnRelu units by
:func:`cvpack.modeling.layers.fuse_conv_bn`, (transposed) conv -> BN pairs of nn.Sequential containers by
:func:`fold_sequential_bn`; the exporter's constant folding takes any other conv -> BN pair; a BN that
follows no conv (GCPose's pre-activation norms) becomes one constant multiply-add
(:func:`bn_nodes_to_affine`). The export fails if a BatchNormalization node is left.
``onnx`` and ``onnxruntime`` are an optional extra (``pip install
.[export]``); the core stays torch-only.

Exporters: 'torchscript' (default for the top-down networks: the same graph as 'dynamo' for these static
CNNs, measured 8 s against 170 s to export RSN-18 on the shared 2-core machine) and 'dynamo'
(torch.export; ``onnxscript`` needed).
"""
import json
import os
import os.path as osp

import numpy as np
import torch

from ._cli import OneLineParser, UsageError, atomic_output, check_exp_dir, check_output_file, die, positive_int

__all__ = ['export_onnx', 'fold_sequential_bn', 'bn_nodes_to_affine', 'verify_onnx', 'load_for_export',
           'onnx_op_counts', 'write_metadata', 'check_export_args', 'load_or_exit', 'main']

INPUT_NAME, OUTPUT_NAME = 'images', 'heatmaps'
PROG = 'python -m cvpack.tools.export'
TOLERANCE = 1e-4   # max |onnx - eager|, relative to the eager heatmaps' peak (at least 1)


def _require(module):
    try:
        return __import__(module)
    except ImportError as e:
        raise ImportError('ONNX export needs the optional packages onnx and onnxruntime (pip install '
                          'onnx onnxruntime onnxscript, or pip install .[export]): %s' % e) from e


def load_for_export(exp_dir, weights=None, opts=None):
    """The exp's ``(cfg, model)``: model in eval mode, on the CPU, with ``weights`` loaded strictly when given.

    Weights go through :func:`cvpack.weights.build_model_with_weights` (any known format, path or URL, read by
    cvpack.safe_load): the settings they need (e.g. mmpose's ``MODEL.CONV_BIAS False``, RGB mean/std) are
    applied before the model is built, and ``cfg.WEIGHT_OVERRIDES`` lists them, so the export can carry them.
    """
    from ..config import clone, freeze
    from ..exp import load_exp
    from ..weights import build_model_with_weights
    if not weights:
        cfg, model = load_exp(exp_dir, opts)
        overrides = {}
    else:
        cfg, model, prepared = build_model_with_weights(exp_dir, weights, opts)
        overrides = dict(prepared.cfg_overrides)
    cfg = clone(cfg)   # the resolved cfg is frozen: the export's own key goes on a copy
    cfg.WEIGHT_OVERRIDES = overrides
    return freeze(cfg), model.eval()


def write_metadata(path, cfg, exp_dir):
    """Store in the ONNX file what the torch side knows from the checkpoint: the exp and the config overrides
    the weights need (preprocessing, decoder), as JSON under 'cvpack.cfg_overrides' (read back by
    :class:`cvpack.inference.onnx.OnnxHeatmapModel`, so the inference API preprocesses as the weights expect)."""
    onnx = _require('onnx')
    model = onnx.load(path)
    entries = {'cvpack.exp': osp.basename(osp.normpath(exp_dir)),
               'cvpack.cfg_overrides': json.dumps(cfg.WEIGHT_OVERRIDES, sort_keys=True)}
    for prop in list(model.metadata_props):
        if prop.key in entries:
            model.metadata_props.remove(prop)
    for key, value in entries.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(model, path)


def onnx_op_counts(path):
    """{op_type: count} of the nodes of the ONNX file at ``path`` (top-level graph)."""
    onnx = _require('onnx')
    counts = {}
    for node in onnx.load(path, load_external_data=False).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def fold_sequential_bn(model):
    """Fold every BatchNorm2d that directly follows a Conv2d / ConvTranspose2d in an nn.Sequential into it
    (in place, eval statistics; the BN becomes Identity). Returns the number folded.

    The ONNX exporters fold Conv -> BN themselves but not ConvTranspose -> BN (the Simple Baselines deconv
    head of HSRNet): w'[.., c, ..] = w * g_c / sqrt(var_c + eps), b'_c = (b_c - mean_c) * g_c / sqrt(var_c + eps)
    + beta_c, with the output channel on dim 0 of a conv weight and dim 1 of a transposed one (groups 1).
    """
    from torch import nn
    folded = 0
    with torch.no_grad():
        for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
            for i in range(len(seq) - 1):
                conv, bn = seq[i], seq[i + 1]
                if not (isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats and bn.affine
                        and isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)) and conv.groups == 1):
                    continue
                scale = bn.weight * (bn.running_var + bn.eps).rsqrt()
                shape = (1, -1, 1, 1) if isinstance(conv, nn.ConvTranspose2d) else (-1, 1, 1, 1)
                conv.weight.mul_(scale.view(shape))
                bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
                conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
                seq[i + 1] = nn.Identity()
                folded += 1
    return folded


def bn_nodes_to_affine(path):
    """Rewrite, in the ONNX file at ``path``, every BatchNormalization node left by the exporter (a BN that
    follows no conv: GCPose's pre-activation GCM norms) as Mul + Add by constant per-channel tensors, its
    eval-mode function: y = x * g / sqrt(var + eps) + (beta - mean * g / sqrt(var + eps)). Returns how many."""
    onnx = _require('onnx')
    from onnx import helper, numpy_helper
    model = onnx.load(path)
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    # the exporter shares equal constants through Identity nodes (a zero bias and a zero mean: one tensor)
    alias = {n.output[0]: n.input[0] for n in graph.node if n.op_type == 'Identity'}

    def const(name):
        while name not in inits and name in alias:
            name = alias[name]
        return inits.get(name)

    nodes, count = [], 0
    for node in graph.node:
        params = [const(n) for n in node.input[1:5]]
        if node.op_type != 'BatchNormalization' or len(node.output) != 1 or any(p is None for p in params):
            nodes.append(node)
            continue
        g, beta, mean, var = (numpy_helper.to_array(p).astype(np.float64) for p in params)
        eps = next((a.f for a in node.attribute if a.name == 'epsilon'), 1e-5)
        scale = g / np.sqrt(var + eps)
        shift = beta - mean * scale
        base = node.output[0]
        for suffix, value in (('_scale', scale), ('_shift', shift)):
            graph.initializer.append(numpy_helper.from_array(value.astype(np.float32).reshape(1, -1, 1, 1),
                                                             base + suffix))
        nodes.append(helper.make_node('Mul', [node.input[0], base + '_scale'], [base + '_mul']))
        nodes.append(helper.make_node('Add', [base + '_mul', base + '_shift'], [base]))
        count += 1
    if count:
        del graph.node[:]
        graph.node.extend(nodes)
        onnx.checker.check_model(model)
        onnx.save(model, path)
    return count


def export_onnx(model, path, input_hw, dynamic_batch=False, exporter='torchscript', batch=1, opset=17,
                channels=3, names=(INPUT_NAME, OUTPUT_NAME)):
    """Write ``model``'s eval forward, BatchNorm folded, to ``path`` as ONNX.

    Args:
        model: a top-down pose network: forward(images (N, 3, H, W)) -> heatmaps (N, K, H/4, W/4) in eval mode.
        input_hw: (H, W) of the exported input (cfg.INPUT_SHAPE).
        dynamic_batch: a symbolic batch dimension N (else N = ``batch``).
        exporter: 'torchscript' or 'dynamo'.
        channels, names: input channels and (input, output) names, for parts that take features, not images
            (GCPose's keypoint head: (R, 256, 14, 14) RoI features -> 'heatmaps').
    Returns:
        the path written. Raises RuntimeError when a BatchNormalization node is left in the graph.
    """
    from ..modeling.layers import fuse_conv_bn
    _require('onnx')
    fused = fuse_conv_bn(model).eval()    # a copy: ``model`` keeps its BN
    fold_sequential_bn(fused)
    images = torch.zeros(max(batch, 2) if dynamic_batch else batch, channels, int(input_hw[0]), int(input_hw[1]))
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with torch.no_grad():
        if exporter == 'torchscript':
            axes = {names[0]: {0: 'N'}, names[1]: {0: 'N'}} if dynamic_batch else None
            torch.onnx.export(fused, (images,), path, dynamo=False, input_names=[names[0]],
                              output_names=[names[1]], dynamic_axes=axes, opset_version=opset,
                              do_constant_folding=True)
        elif exporter == 'dynamo':
            _require('onnxscript')
            shapes = ({0: torch.export.Dim('N', min=1)},) if dynamic_batch else None
            program = torch.onnx.export(fused, (images,), dynamo=True, input_names=[names[0]],
                                        output_names=[names[1]], dynamic_shapes=shapes, opset_version=18)
            program.save(path)
        else:
            raise ValueError("exporter must be 'torchscript' or 'dynamo', got %r" % exporter)
    bn_nodes_to_affine(path)
    left = onnx_op_counts(path).get('BatchNormalization', 0)
    if left:
        raise RuntimeError('%s: %d BatchNormalization node(s) left after folding (a BN not right after a conv?)'
                           % (path, left))
    return path


def verify_onnx(path, model, images, tol=TOLERANCE):
    """Run ``path`` with onnxruntime and the eager ``model`` (eval, unfolded) on ``images``; return the max
    absolute difference of the heatmaps. Raises AssertionError when it exceeds ``tol`` x max(1, peak)."""
    from ..inference.onnx import OnnxHeatmapModel
    with torch.no_grad():
        ref = model.eval()(images).float()
    out = OnnxHeatmapModel(path)(images)
    if out.shape != ref.shape:
        raise AssertionError('%s: heatmaps %s, eager model %s' % (path, tuple(out.shape), tuple(ref.shape)))
    diff = float((out - ref).abs().max())
    limit = tol * max(1.0, float(ref.abs().max()))
    if not diff <= limit:
        raise AssertionError('%s: heatmaps differ from the eager model by %.3g (limit %.3g)' % (path, diff, limit))
    return diff


def main(argv=None):
    """Export as the command line asks; returns the path written. Bad arguments or input (exp folder, weights,
    --out, --format, --batch) exit 2 with one line naming them, checked before the slow export; the file is
    written under a temporary name and renamed once exported, stamped and verified, so a failure leaves none."""
    parser = OneLineParser(prog=PROG, description=__doc__.split('\n\n')[0])
    parser.add_argument('exp_dir', help='exp folder (config.py, network.py)')
    init = parser.add_mutually_exclusive_group(required=True)
    init.add_argument('--weights', help='checkpoint or weights file / URL')
    init.add_argument('--random-init', action='store_true',
                      help="export the exp's random initialisation (benchmarks, tests): an explicit choice")
    parser.add_argument('--format', default='onnx', choices=['onnx'])
    parser.add_argument('--dynamic-batch', action='store_true', help='symbolic batch size N')
    parser.add_argument('--batch', type=positive_int, default=1,
                        help='batch of the exported graph without --dynamic-batch (>= 1)')
    parser.add_argument('--exporter', default='torchscript', choices=['torchscript', 'dynamo'])
    parser.add_argument('--out', help='output file (default: EXP_DIR/<exp name>.onnx)')
    parser.add_argument('--no-verify', action='store_true', help='skip the onnxruntime check')
    parser.add_argument('opts', nargs='*', help='KEY VALUE config overrides (e.g. INPUT_SHAPE "[384, 288]")')
    args, extra = parser.parse_known_args(argv)
    bad = [a for a in extra if a.startswith('--')]
    if bad:
        parser.error('unknown option(s): %s' % ' '.join(bad))
    args.opts = list(args.opts) + extra
    args.out = check_export_args(parser, args.exp_dir, args.weights, args.out, '.onnx', verify=not args.no_verify,
                                 allow_no_verify=True)
    if args.exporter == 'dynamo':   # (checked here, not after the model is built: an ImportError traceback)
        try:
            _require('onnxscript')
        except ImportError:
            parser.error('--exporter dynamo needs the optional package onnxscript (pip install onnxscript); the '
                         'default --exporter torchscript does not')
    with torch.no_grad():   # (not torch.set_grad_enabled(False): main() is also called in-process)
        return _export_main(args)


def check_export_args(parser, exp_dir, weights, out, suffix, verify=True, allow_no_verify=False):
    """The output path, after the checks that need no model: the exp folder has its config.py and network.py,
    a local weights file exists, ``out`` (default EXP_DIR/<exp name><suffix>) can be written and is not the
    weights file, onnx (and onnxruntime when ``verify``) can be imported. Exits 2 otherwise. (Also GCPose's
    exporter; ``allow_no_verify``: the tool has --no-verify, named in the message.)"""
    from ..safe_load import is_url
    try:
        check_exp_dir(exp_dir)
    except UsageError as e:
        parser.error(str(e))
    if weights is not None and not weights.strip():   # ('' would mean the random init again, silently)
        parser.error('--weights is empty: give a weights file or URL, or --random-init')
    if weights and not is_url(weights) and not osp.isfile(weights):
        parser.error('--weights %s: file not found' % weights)
    try:
        out = check_output_file(out or osp.join(exp_dir, osp.basename(osp.normpath(exp_dir)) + suffix))
    except UsageError as e:
        parser.error(str(e))
    # the ONNX file renamed onto the weights it was made from replaced the user's checkpoint, silently
    if weights and not is_url(weights) and osp.exists(out) and osp.samefile(out, weights):
        parser.error('--out %s is the --weights file: the export would replace the checkpoint it reads' % out)
    for module in ('onnx',) + (('onnxruntime',) if verify else ()):   # missing: found after the slow export
        try:
            _require(module)
        except ImportError:
            parser.error('exporting needs the optional package %s (pip install onnx onnxruntime, or pip install '
                         '.[export])%s' % (module, '; or skip the check with --no-verify' if module != 'onnx'
                                           and allow_no_verify else ''))
    return out


def load_or_exit(exp_dir, weights, opts, prog=PROG):
    """:func:`load_for_export`; a bad exp, config override or weights file ends the tool with one line, exit 2.
    ValueError too: a network refusing an override its architecture cannot take (``INPUT_SHAPE "[250, 190]"``:
    "INPUT_SHAPE ... must be 4x OUTPUT_SHAPE") raised it from build_model, a traceback."""
    from ..config import ConfigError
    from ..safe_load import CheckpointError
    try:
        return load_for_export(exp_dir, weights, opts)
    except (CheckpointError, ConfigError, FileNotFoundError, KeyError, ImportError, ValueError) as e:
        die('%s: error: %s' % (prog, e.args[0] if isinstance(e, KeyError) and e.args else e))


def _export_main(args):
    cfg, model = load_or_exit(args.exp_dir, args.weights, args.opts)
    from ..data.build import TOP_DOWN_PIPELINES
    if cfg.DATASET.PIPELINE not in TOP_DOWN_PIPELINES:
        die('%s: error: %s: not a top-down exp (DATASET.PIPELINE %r); a whole-image detector exports its own parts '
            '(GCPose: the export module of its project package, docs/EXPORT.md)' % (PROG, args.exp_dir,
                                                                                 cfg.DATASET.PIPELINE))
    h, w = cfg.INPUT_SHAPE
    with atomic_output(args.out) as tmp:
        try:
            export_onnx(model, tmp, (h, w), args.dynamic_batch, args.exporter, args.batch)
        except torch.onnx.OnnxExporterError as e:
            # a network the exporter cannot express (an op without an ONNX form): one line naming the exp and
            # the exporter's reason, not 60 lines of exporter internals (the first line is the reason)
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
            other = 'dynamo' if args.exporter == 'torchscript' else 'torchscript'
            die('%s: error: %s: the %s exporter cannot export this network: %s (--exporter %s may; %s not written)'
                % (PROG, args.exp_dir, args.exporter, reason, other, args.out), code=1)
        write_metadata(tmp, cfg, args.exp_dir)
        ops = onnx_op_counts(tmp)
        if not args.no_verify:
            gen = torch.Generator().manual_seed(0)
            n = 3 if args.dynamic_batch else args.batch
            try:
                diff = verify_onnx(tmp, model, torch.randn(n, 3, h, w, generator=gen))
            except AssertionError as e:   # names the temporary file, removed on the way out
                die('%s: error: %s not written: %s' % (PROG, args.out, str(e).split(': ', 1)[-1]), code=1)
    print('wrote %s (%s, %dx%d, batch %s; %d nodes, BatchNormalization 0, Conv %d)'
          % (args.out, args.exporter, h, w, 'N' if args.dynamic_batch else args.batch, sum(ops.values()),
             ops.get('Conv', 0)))
    if not args.no_verify:
        print('onnxruntime vs eager: max |heatmap difference| %.2e (batch %d)' % (diff, n))
    return args.out


if __name__ == '__main__':
    main()

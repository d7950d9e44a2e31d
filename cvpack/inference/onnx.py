"""Run an exported pose network (``python -m cvpack.tools.export``) with onnxruntime behind the eval
forward contract of the torch models, so the same pre- and post-processing (flip test, decode, mapping
back, rescoring) drive either backend (docs/EXPORT.md).

    model = OnnxHeatmapModel('RSN18.coco.onnx')
    heatmaps = model(images)        # (N, 3, H, W) float tensor -> (N, K, H/4, W/4) float32 tensor

``onnxruntime`` is optional (``pip install .[export]``); importing this module does not need it.
"""
import json
import logging

import numpy as np
import torch

__all__ = ['OnnxHeatmapModel', 'providers_for']
logger = logging.getLogger(__name__)


def _show(dims):
    """(17,) -> '17'; (256, 192) -> '(256, 192)'; None (a symbolic dim) -> '?'."""
    dims = tuple('?' if d is None else d for d in dims)
    return str(dims[0]) if len(dims) == 1 else '(%s)' % ', '.join(map(str, dims))


def _checkpoint_hint(path):
    """The hint for a PyTorch checkpoint (a zip archive or a pickle) given where an ONNX file belongs: onnxruntime
    only says 'Protobuf parsing failed' (the torch backend, given an .onnx file, hints the other way round)."""
    try:
        with open(path, 'rb') as f:
            head = f.read(4)
    except OSError:
        return ''
    if head == b'PK\x03\x04' or head[:1] == b'\x80':
        return (" (a PyTorch checkpoint, not an ONNX file: load it with backend='torch', or export it first with "
                "python -m cvpack.tools.export)")
    return ''


def providers_for(device, available):
    """onnxruntime execution providers that run on ``device`` ('cpu', 'cuda', 'cuda:1', or 'auto': CUDA when torch
    sees a GPU and onnxruntime has the CUDA provider, else the CPU), given the ``available`` ones
    (``onnxruntime.get_available_providers()``). An explicit CUDA device needs the CUDA provider (the
    onnxruntime-gpu package): without it, a ValueError naming what is available (the session would otherwise run
    on the CPU unnoticed)."""
    explicit = device not in (None, 'auto')
    device = torch.device(device if explicit else 'cuda' if torch.cuda.is_available() else 'cpu')
    if device.type == 'cpu':
        return ['CPUExecutionProvider']
    if device.type != 'cuda':
        raise ValueError("backend='onnxruntime' runs on 'cpu' or 'cuda', got device %r" % str(device))
    if 'CUDAExecutionProvider' not in available:
        if not explicit:
            return ['CPUExecutionProvider']
        raise ValueError("device %r with backend='onnxruntime' needs onnxruntime's CUDAExecutionProvider (the "
                         "onnxruntime-gpu package); this onnxruntime has %s" % (str(device), ', '.join(available)))
    return [('CUDAExecutionProvider', {'device_id': device.index or 0}), 'CPUExecutionProvider']


class OnnxHeatmapModel:
    """An onnxruntime session with the call contract of a top-down network in eval mode.

    Args:
        path: ONNX file with one input (N, 3, H, W) and one output (N, K, H/4, W/4), as written by
            cvpack.tools.export (names 'images' and 'heatmaps', but any single input/output works).
        threads: intra-op threads (default: torch.get_num_threads(), as the torch path uses).
        providers: onnxruntime execution providers (default: those of ``device``).
        device: where to run, as the torch side: 'cpu' (default), 'cuda', 'cuda:1', 'auto' (:func:`providers_for`).
        spin: let idle intra-op threads busy-wait for work (onnxruntime's default). Off by default: on a CPU
            shared with other processes spinning threads steal the cores the working ones need (RSN-18,
            batch 8, 2 threads, load 4-7: 0.38 s median without spinning against 0.51 s with it; docs/SPEED.md),
            the same reason the torch side runs OpenMP with ``OMP_WAIT_POLICY=PASSIVE``.

    The session uses all graph optimizations (``ORT_ENABLE_ALL``: constant folding, Conv+ReLU/Add fusion and
    the NCHWc blocked-layout convolutions of the CPU provider), sequential execution and one inter-op thread.
    """

    def __init__(self, path, threads=None, providers=None, spin=False, device='cpu'):
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise ImportError('%s: running an ONNX model needs the optional package onnxruntime '
                              '(pip install onnxruntime, or pip install .[export])' % path) from e
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads or torch.get_num_threads())
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.add_session_config_entry('session.intra_op.allow_spinning', '1' if spin else '0')
        opts.add_session_config_entry('session.inter_op.allow_spinning', '1' if spin else '0')
        # 'auto' (chosen for the caller) may end on the CPU, as before the device chose the providers
        fallback = not providers and device in (None, 'auto')
        try:
            providers = providers or providers_for(device, ort.get_available_providers())
        except ValueError as e:
            raise ValueError('%s: %s' % (path, e)) from None
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=providers)
        except Exception as e:   # onnxruntime raises its own types for missing / corrupt files
            raise RuntimeError('%s: onnxruntime cannot load it: %s%s' % (path, e, _checkpoint_hint(path))) from e
        # onnxruntime falls back to the CPU with only a log line when a provider fails to start (no CUDA driver)
        wanted = providers[0] if isinstance(providers[0], str) else providers[0][0]
        started = self.session.get_providers()
        if wanted not in started:
            if not fallback:
                raise RuntimeError('%s: onnxruntime could not start %s (the session has %s; see onnxruntime\'s log)'
                                   % (path, wanted, ', '.join(started)))
            logger.warning("%s: onnxruntime could not start %s; device 'auto' runs it on %s", path, wanted,
                           ', '.join(started))
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError('%s: expected one input and one output, got %d and %d'
                             % (path, len(inputs), len(outputs)))
        self.path = str(path)
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        self.fixed_batch, self.channels, self.input_hw = self._input_shape(inputs[0].shape)
        self.num_keypoints, self.output_hw = self._output_shape(outputs[0].shape)
        self.training = False
        self.expected_keypoints = None   # set by check_exp: checked per forward when the graph leaves K open
        # the exp and config overrides of the weights it was exported from (cvpack.tools.export.write_metadata)
        meta = self.session.get_modelmeta().custom_metadata_map
        self.exp_name = meta.get('cvpack.exp')
        try:
            self.cfg_overrides = json.loads(meta.get('cvpack.cfg_overrides', '{}'))
        except ValueError:
            raise ValueError('%s: its cvpack.cfg_overrides metadata is not valid JSON' % path) from None

    def _input_shape(self, shape):
        """(fixed batch or None, channels or None, (H, W) with None for symbolic dims) of the input; a shape
        no batch fits (not rank 4, a dim of 0) is refused here, not at the first forward (a fixed batch of 0
        would otherwise fail there with no word about the file). Any channel count: GCPose's exported keypoint
        head takes RoI features; :meth:`check_exp` requires the 3 of an image for a top-down exp."""
        dims = [d if isinstance(d, int) else None for d in shape]
        if len(dims) != 4 or any(d is not None and d < 1 for d in dims):
            raise ValueError('%s: input %r has shape %s; expected (N, C, H, W) with every fixed dim >= 1 '
                             '(export with python -m cvpack.tools.export, e.g. --dynamic-batch)'
                             % (self.path, self.input_name, list(shape)))
        return dims[0], dims[1], tuple(dims[2:])

    def _output_shape(self, shape):
        """(K or None, (h, w) with None for symbolic dims) of the heatmap output (N, K, h, w)."""
        dims = [d if isinstance(d, int) else None for d in shape]
        if len(dims) != 4 or any(d is not None and d < 1 for d in dims[1:]):
            raise ValueError('%s: output %r has shape %s; expected heatmaps (N, K, h, w) with every fixed dim >= 1'
                             % (self.path, self.output_name, list(shape)))
        return dims[1], tuple(dims[2:])

    def check_exp(self, exp_name, num_keypoints, input_hw, log=None):
        """Refuse a file whose keypoint count or input size (where the graph fixes them) differ from the exp's:
        its heatmaps would be decoded with another skeleton or mapped back from another crop size.
        A file exported from another exp (metadata 'cvpack.exp') whose shapes fit is only warned about on
        ``log`` (e.g. an exp renamed or copied since the export)."""
        want = [('input channels', (self.channels,), (3,)),
                ('keypoint count', (self.num_keypoints,), (num_keypoints,)),
                ('input size (H, W)', self.input_hw, tuple(input_hw))]
        for what, got, expected in want:
            if any(g is not None and g != e for g, e in zip(got, expected)):
                raise ValueError('%s: exported with %s %s (from exp %s), but exp %s has %s: export the ONNX file '
                                 'from this exp' % (self.path, what, _show(got), self.exp_name or '<not recorded>',
                                                    exp_name, _show(expected)))
        self.expected_keypoints = num_keypoints
        if self.exp_name is not None and self.exp_name != exp_name and log is not None:
            log.warning('%s was exported from exp %s, not %s (the shapes fit: running it with the config of %s)',
                        self.path, self.exp_name, exp_name, exp_name)

    def eval(self):
        """No-op (the graph is an eval forward); returns self, like nn.Module.eval."""
        return self

    def train(self, mode=True):
        """Only eval mode exists: ``train(False)`` is a no-op (predictors restore the mode they found)."""
        if mode:
            raise RuntimeError('%s: an exported ONNX model cannot train' % self.path)
        return self

    def parameters(self):
        """None on the torch side (predictors then put inputs on the CPU)."""
        return iter(())

    buffers = parameters

    def to(self, *args, **kwargs):
        """No-op: the session runs where its providers run; returns self."""
        return self

    def __call__(self, images):
        return self.forward(images)

    def forward(self, images):
        """images: (N, 3, H, W) float tensor or array, normalised as the exp's pipeline does, any memory format.

        Returns: heatmaps (N, K, H/4, W/4) float32 CPU tensor on the crop's stride-4 grid, as the torch model.
        A graph exported with a fixed batch B runs N in chunks of B (the last one zero-padded); N may be 0.
        """
        x = images.detach().float().cpu().contiguous().numpy() if torch.is_tensor(images) else \
            np.ascontiguousarray(images, dtype=np.float32)
        if x.ndim != 4 or x.shape[1] != (self.channels or x.shape[1]):
            raise ValueError('%s: input must be (N, %s, H, W), got %s' % (self.path, self.channels, tuple(x.shape)))
        hw = tuple(x.shape[2:])
        if any(e is not None and e != g for e, g in zip(self.input_hw, hw)):
            raise ValueError('%s: exported for input %s, got %s (cfg.INPUT_SHAPE must match the export)'
                             % (self.path, self.input_hw, hw))
        if self.fixed_batch is None or x.shape[0] == self.fixed_batch:
            out = self.session.run([self.output_name], {self.input_name: x})[0]
        else:
            b, n, parts = self.fixed_batch, x.shape[0], []
            # n = 0 (an image without people): one all-padding batch gives the (0, K, h, w) heatmaps a torch model
            # and a dynamic-batch file return (the loop below ran no batch: "need at least one array to concatenate")
            for i in range(0, max(n, 1), b):
                chunk = x[i:i + b]
                pad = b - len(chunk)
                if pad:
                    chunk = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], np.float32)])
                parts.append(self.session.run([self.output_name], {self.input_name: chunk})[0][:b - pad])
            out = np.concatenate(parts)
        expected = self.expected_keypoints
        if expected is not None and (out.ndim != 4 or out.shape[1] != expected):
            raise ValueError('%s: the graph returned heatmaps %s, the exp has %d keypoints'
                             % (self.path, tuple(out.shape), expected))
        return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))

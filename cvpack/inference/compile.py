"""``TEST.COMPILE``: the test forward through ``torch.compile`` with inductor freezing.

Freezing treats the eval-mode weights as constants: BatchNorm is folded into the convolutions, and on the
CPU the conv weights are pre-packed for oneDNN and the elementwise tails (bias, ReLU, residual add) are fused
into generated kernels. Measured with tools/bench_models.py (batch 8, 256x192, 2 threads, channels-last;
docs/SPEED.md): RSN-18 inference 0.215 s -> 0.154 s in fp32 and 0.117 s -> 0.049 s with bf16 autocast. The
price is a one-off compile of about 30 to 90 s per input shape on 2 cores (the last, smaller batch of a test
run is one more shape), so it is off by default and pays off on full COCO val, not on the shipped subset.
It is meant for the top-down pipelines, whose batches all have one shape: a whole-image detector (GCPose)
would recompile for every padded image size, so the tester keeps those eager.
"""
import torch
import torch._inductor.config as inductor_config
from torch import nn

__all__ = ['FrozenInference', 'compile_for_inference', 'maybe_compile']


class FrozenInference(nn.Module):
    """``model`` behind ``torch.compile(dynamic=False)``, compiled and run with inductor's ``freezing`` on.

    The flag is patched around every call, because compiling happens lazily inside the first call of each
    shape; ``torch.compile(options={'freezing': True})`` measured 1.4x slower in bf16 (RSN-18: 0.080 s vs
    0.055 s per batch of 8), i.e. it did not freeze the same way, and setting the global flag would leak
    into the rest of the process.
    """

    def __init__(self, model):
        super().__init__()
        self.model = model
        # Kept out of the submodules, so state_dict() and modules() see ``model`` once, under its own name.
        object.__setattr__(self, 'compiled', torch.compile(model, dynamic=False))

    def forward(self, *args, **kwargs):
        """The wrapped model's forward (same inputs, outputs, shapes and frames), compiled and frozen."""
        with inductor_config.patch(freezing=True):
            return self.compiled(*args, **kwargs)


def compile_for_inference(model, log=None):
    """Return ``model`` (eval mode) compiled for inference with frozen weights (:class:`FrozenInference`).

    The result is called like ``model`` and shares its parameters; ``dynamic=False`` gives each batch
    shape its own static graph (a dynamic one would be slower on every batch to save one compile).
    Only for no-grad use: frozen weights ignore later changes to the parameters.
    """
    if log is not None:
        log.info('TEST.COMPILE: torch.compile with inductor freezing; the first batch of each shape compiles')
    return FrozenInference(model.eval()).eval()


def maybe_compile(model, cfg, log):
    """TEST.COMPILE for the fixed-size top-down pipelines (one batch shape; test.py and ``cvpack.apis``); other
    pipelines (whole-image detection, a project's own TEST.PREDICTOR) stay eager, with a warning, since every
    new image size would recompile."""
    from ..data.build import TOP_DOWN_PIPELINES
    pipeline = cfg.DATASET.PIPELINE
    if cfg.TEST.PREDICTOR or pipeline not in TOP_DOWN_PIPELINES:
        log.warning('TEST.COMPILE ignored: only the top-down pipelines %s compile (this exp: DATASET.PIPELINE '
                    '%r, TEST.PREDICTOR %r)', list(TOP_DOWN_PIPELINES), pipeline, cfg.TEST.PREDICTOR)
        return model
    return compile_for_inference(model, log)

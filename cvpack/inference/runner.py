"""The batch loop shared by ``test.py`` (:func:`cvpack.engine.tester.run_inference`) and ``cvpack.apis``.

One place moves the crops to the device (channels-last per MODEL.CHANNELS_LAST), runs the predictor under
TEST.AMP autocast and collects the instance dicts, so the API's keypoints are test.py's by construction.
"""
import torch

__all__ = ['predict_batches']


def predict_batches(model, batches, predictor, cfg, device, progress=False, desc='test'):
    """Run ``predictor(model, batch)`` on every collated batch of ``batches`` (an iterable, e.g. a DataLoader).

    Args:
        model: the eval model (or any callable with the eval forward contract the predictor expects).
        batches: collated sample dicts with an 'image' tensor (top-down crops) or list of image tensors.
        device: torch.device the images go to; the other fields stay on the CPU for the predictor.
        progress: show a tqdm bar.
    Returns: the list of instance dicts of all batches, in order.
    """
    from tqdm import tqdm
    from ..engine.utils import amp_dtype, autocast, to_device
    dtype = amp_dtype(cfg.TEST.AMP, device)
    channels_last = cfg.MODEL.CHANNELS_LAST
    instances = []
    with torch.inference_mode():
        for batch in tqdm(batches, desc=desc, disable=not progress, dynamic_ncols=True):
            batch = dict(batch, image=to_device(batch['image'], device, channels_last))
            with autocast(dtype, device):
                instances.extend(predictor(model, batch))
    return instances

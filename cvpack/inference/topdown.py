"""Top-down predictor: model forward (+ flip test), decode, map back to the image, instance score."""
import numpy as np
import torch

from ..codecs import build_codec
from ..decode.coords import to_image_coords, to_image_coords_affine
from ..decode.flip import flip_back
from ..decode.heatmap import NonFiniteHeatmaps
from .rescore import rescore
from ..utils import to_numpy


def _model_device(model):
    """Device of the model's first parameter/buffer; a callable without any (an ONNX Runtime wrapper, any
    object with the eval forward contract) gets CPU tensors."""
    for p in getattr(model, 'parameters', tuple)():
        return p.device
    for b in getattr(model, 'buffers', tuple)():
        return b.device
    return torch.device('cpu')


def _heatmaps_of(output):
    """The eval output is (N, K, h, w); a multi-stage list/tuple gives its last (finest) entry."""
    if isinstance(output, (list, tuple)):
        output = output[-1]
    if not isinstance(output, torch.Tensor) or output.dim() != 4:
        raise TypeError('the model must return heatmaps (N, K, h, w) in eval mode, got %s'
                        % (tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__))
    return output


class TopDownPredictor:
    """``(model, batch) -> list of instance dicts`` for the top-down pipelines (megvii, simple_baselines, cpn).

    Per cfg.TEST: FLIP / FLIP_SHIFT (flip test, Simple Baselines' one-column shift), RESCORE / KEYPOINT_THRESH;
    decoding by the codec of cfg.CODEC with cfg.TEST.DECODER (:func:`cvpack.codecs.build_codec`).
    """

    def __init__(self, cfg):
        self.cfg = cfg
        self.flip = bool(cfg.TEST.FLIP)
        self.flip_shift = bool(cfg.TEST.FLIP_SHIFT)
        self.flip_pairs = [tuple(p) for p in cfg.DATASET.KEYPOINT.FLIP_PAIRS]
        self.input_hw = tuple(cfg.INPUT_SHAPE)
        # Simple Baselines maps back through its float32 affine and keeps float32 predictions (F#19)
        self.sb_coords = cfg.DATASET.PIPELINE == 'simple_baselines'
        self.pixel_std = float(cfg.DATASET.PIXEL_STD)
        self.rescore = cfg.TEST.RESCORE
        self.keypoint_thresh = float(cfg.TEST.KEYPOINT_THRESH)
        self.codec = build_codec(cfg)

    @torch.no_grad()
    def heatmaps(self, model, images):
        """Averaged heatmaps (N, K, h, w) float32 on the model's device; flip test per cfg.TEST.FLIP.

        The flipped input is the *normalised* batch flipped along W (as the original test.py);
        ``(out + flip_back(out_flipped)) * 0.5``.
        """
        module = isinstance(model, torch.nn.Module)   # other callables: no train/eval switch
        was_training = module and model.training
        if module:
            model.eval()
        try:
            images = images.to(_model_device(model), non_blocking=True)
            out = _heatmaps_of(model(images)).float()
            if self.flip:
                flipped = _heatmaps_of(model(images.flip(3))).float()
                out = (out + flip_back(flipped, self.flip_pairs, shift=self.flip_shift)) * 0.5
        finally:
            if module:
                model.train(was_training)
        return out

    def __call__(self, model, batch):
        """Predict every crop of a collated val/test batch.

        Args:
            model: top-down model (eval output (N, K, h, w)); put in eval mode for the call. Any callable
                with that contract works (images (N, 3, H, W) -> heatmaps, e.g. an ONNX Runtime wrapper).
            batch: dict with 'image' (N, 3, H, W) normalised, 'center' (N, 2), 'scale' (N, 2),
                'score' (N,) detection scores, 'image_id' (N,), optional 'bbox' (N, 4) xywh and 'index'.

        Returns:
            list of N dicts: image_id, keypoints np (K, 3) [x_img, y_img, keypoint score] (image pixels),
            score (instance score per cfg.TEST.RESCORE), det_score, bbox, center, scale,
            area (= scale_x * scale_y * PIXEL_STD^2 in float32, used by OKS-NMS as Simple Baselines), and index
            when the batch has it.
        """
        heatmaps = self.heatmaps(model, batch['image'])
        try:
            coords, kp_scores = self.codec.decode(heatmaps)
        except NonFiniteHeatmaps as e:
            raise _named(e, batch) from None
        center = to_numpy(batch['center'], np.float64).reshape(-1, 2)
        scale = to_numpy(batch['scale'], np.float64).reshape(-1, 2)
        num = coords.shape[0]
        det = to_numpy(batch['score'], np.float64).reshape(-1) if 'score' in batch else np.ones(num)
        if self.sb_coords:
            xy = to_image_coords_affine(coords, center, scale, self.input_hw, self.codec.output_hw, self.pixel_std)
        else:
            xy = to_image_coords(coords, center, scale, self.input_hw, self.pixel_std)
        # OKS-NMS area as Simple Baselines' np.prod(s * 200, 1): a float32 product of the float32 box (F#19)
        area = np.prod(scale.astype(np.float32) * np.float32(self.pixel_std), axis=1).astype(np.float64)
        scores = rescore(self.rescore, det, kp_scores, self.keypoint_thresh)
        keypoints = np.concatenate([xy, kp_scores[..., None]], axis=-1)
        bbox = to_numpy(batch['bbox'], np.float64).reshape(-1, 4) if 'bbox' in batch else None
        image_ids = batch['image_id']
        if isinstance(image_ids, torch.Tensor):
            image_ids = image_ids.tolist()
        out = []
        for n in range(num):
            inst = {'image_id': image_ids[n], 'keypoints': keypoints[n], 'score': float(scores[n]),
                    'det_score': float(det[n]), 'bbox': None if bbox is None else bbox[n],
                    'center': center[n], 'scale': scale[n],
                    'area': float(area[n])}
            if 'index' in batch:
                index = batch['index'][n]
                inst['index'] = int(index.item() if isinstance(index, torch.Tensor) else index)
            out.append(inst)
        return out


def _named(error, batch):
    """The decoder's :class:`NonFiniteHeatmaps` naming the image ids and boxes of its samples; ``image_ids`` and
    ``boxes`` (xywh or None) of the bad samples ride along for callers that know the files (the inference API)."""
    ids = batch['image_id']
    ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
    bbox = to_numpy(batch['bbox'], np.float64).reshape(-1, 4) if 'bbox' in batch else None
    boxes = [None if bbox is None else [round(float(v), 2) for v in bbox[n]] for n in error.samples]
    where = ['image %s%s' % (ids[n], '' if b is None else ' box %s' % b) for n, b in zip(error.samples, boxes)]
    named = NonFiniteHeatmaps('%s; %d of the %d people of the batch: %s%s' % (
        error, len(where), len(ids), '; '.join(where[:3]), ' ...' if len(where) > 3 else ''), error.samples)
    named.image_ids, named.boxes, named.batch_size = [ids[n] for n in error.samples], boxes, len(ids)
    return named

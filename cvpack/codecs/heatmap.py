"""Heatmap codecs: a target encoder, its decoders, its score rule and its coordinate frame in one object.

Follows mmpose 1.x's ``codecs/`` (``MegviiHeatmap``, ``MSRAHeatmap``): ``encode(keypoints, visible)`` makes the
training target of one person crop, ``decode(heatmaps)`` turns predicted maps back into keypoints and scores.
The preset chooses the codec once (``cfg.CODEC``); the datasets and the top-down predictor get their encoder
and decoder from it (:func:`build_codec`). ``cfg.TEST.DECODER`` picks the decoder *within* the codec and is
checked against it: a decoder whose score rule assumes another target scale is an error naming the key.

Frames. Keypoints are in input-crop pixels (x, y); a heatmap cell c covers input pixels around
``c * stride + CELL_OFFSET * stride``, the inverse of the encoder's placement:

* blurred peaks (Megvii, CPN): peak at cell ``int(x / stride)`` (floor), so cell c holds [c s, (c + 1) s) and
  decodes to ``c * s + s / 2`` (``CELL_OFFSET = 0.5``);
* unit Gaussians (Simple Baselines / MSRA): centre ``int(x / stride + 0.5)`` (round), so cell c holds
  [(c - 0.5) s, (c + 0.5) s) and decodes to ``c * s`` (``CELL_OFFSET = 0``).

Each decoder of :mod:`cvpack.decode.heatmap` states the frame and score rule of what it returns
(:data:`DECODER_CONVENTIONS`); the codec maps a frame-agnostic decoder (argmax, quarter, dark: raw maximum,
``x * s``) into its own frame and score rule, and refuses a decoder whose score rule is another codec's.
"""
import numpy as np

from ..data.targets import blurred_peak_targets, gaussian_targets
from ..decode.heatmap import DECODERS, decoder_kwargs

__all__ = ['CODECS', 'DECODER_CONVENTIONS', 'CPNHeatmap', 'HeatmapCodec', 'MSRAHeatmap', 'MegviiHeatmap',
           'build_codec']

# TEST.DECODER -> (cell offset already in its output coords, target peak its score rule assumes or None).
# None = the score is the raw heatmap value at the peak, which the codec turns into its own score rule.
DECODER_CONVENTIONS = {
    'megvii': (0.5, 255.0),          # x * s + s / 2; unblurred value / 255 + 0.5
    'mmpose_megvii': (0.5, 255.0),   # (x + 0.5) * s for interior peaks (mmpose's quirk); blurred max / 255 + 0.5
    'quarter': (0.0, None),          # x * s; raw maximum
    'dark': (0.0, None),
    'argmax': (0.0, None),
}


class HeatmapCodec:
    """Base: stride, decoder validation and decoding. Subclasses set the class attributes and :meth:`encode`.

    Attributes (per subclass): ``PEAK`` value of a target peak; ``CELL_OFFSET`` the frame (module docstring);
    ``DECODERS`` the ``TEST.DECODER`` values accepted; ``SCORE`` a sentence on the keypoint score rule.
    """
    name = ''
    PEAK = 1.0
    CELL_OFFSET = 0.0
    DECODERS = ()
    SCORE = ''

    def __init__(self, input_hw, output_hw, decoder, decoder_params=None):
        self.input_hw = tuple(int(v) for v in input_hw)
        self.output_hw = tuple(int(v) for v in output_hw)
        # (sx, sy): input / heatmap size per axis
        self.stride = (self.input_hw[1] / self.output_hw[1], self.input_hw[0] / self.output_hw[0])
        self.check_decoder(decoder)
        self.decoder = decoder
        self.decoder_params = dict(decoder_params or {})

    @classmethod
    def check_decoder(cls, decoder):
        """Raise unless ``decoder`` (a TEST.DECODER value) is one of this codec's: unknown -> KeyError,
        a score rule for another target scale -> ValueError; both name the key."""
        if decoder not in DECODERS:
            raise KeyError('unknown decoder %r (TEST.DECODER); known: %s' % (decoder, sorted(DECODERS)))
        peak = DECODER_CONVENTIONS[decoder][1]
        if decoder not in cls.DECODERS or (peak is not None and peak != cls.PEAK):
            why = (' (its score rule assumes targets with peak %g, this codec\'s peak is %g)' % (peak, cls.PEAK)
                   if peak is not None and peak != cls.PEAK else '')
            raise ValueError('TEST.DECODER %r does not fit CODEC %r%s; choose one of %s'
                             % (decoder, cls.name, why, list(cls.DECODERS)))

    def to_input(self, cells):
        """Heatmap cells (..., 2) (x, y) -> input-crop pixels: ``c * s + CELL_OFFSET * s`` per axis."""
        s = np.array(self.stride)
        return np.asarray(cells, np.float64) * s + self.CELL_OFFSET * s

    def score(self, peak_values):
        """Raw heatmap values at the peaks -> keypoint scores (this codec's rule); identity here."""
        return np.asarray(peak_values, np.float64)

    def decode(self, heatmaps):
        """Keypoints of predicted heatmaps with ``self.decoder``.

        Args:
            heatmaps: (N, K, h, w) torch (any device) or numpy, on this codec's target scale.
        Returns:
            coords (N, K, 2) float64 (x, y) input-crop pixels (map them to the image with
            :func:`cvpack.decode.coords.to_image_coords`), scores (N, K) float64 (rule: ``SCORE``).
        """
        coords, raw = DECODERS[self.decoder](heatmaps, stride=self.stride, **self.decoder_params)
        offset, peak = DECODER_CONVENTIONS[self.decoder]
        if offset != self.CELL_OFFSET:
            coords = coords + (self.CELL_OFFSET - offset) * np.array(self.stride)
        return coords, (raw if peak is not None else self.score(raw))

    def round_trip_tolerance(self):
        """Largest |encode -> decode| error (input px, per axis) of a keypoint whose target lies inside the map.

        Half a cell (the placement's quantisation), measured with keypoints >= 4 cells inside a 64x48 map (for
        MSRA targets: 3 sigma + 1 cells). Nearer the edges the truncated (MSRA) or reflected (Megvii) target
        moves the decoded peak further: up to 2.8 px (MSRA, peak off the map) and 5.9 px (Megvii + dark) at 4x.
        """
        return 0.5 * max(self.stride)

    def __repr__(self):
        return '%s(input_hw=%s, output_hw=%s, decoder=%r, %s)' % (
            type(self).__name__, self.input_hw, self.output_hw, self.decoder, self.decoder_params)


class MegviiHeatmap(HeatmapCodec):
    """RSN / MSPN targets: one-hot at the floor cell, ``cv2.GaussianBlur`` per kernel, rescaled to peak 255.

    encode: :func:`cvpack.data.targets.blurred_peak_targets` with ``kernels`` (one target level each, coarse to
    fine as DATASET.TRAIN.GAUSSIAN_KERNELS). Frame: ``x = c * s + s / 2``. Score: value / 255 + 0.5 (the
    original's rule: 1.5 at a full peak, 0.5 on an empty map); frame-agnostic decoders are mapped to it.
    """
    name = 'megvii'
    PEAK = 255.0
    CELL_OFFSET = 0.5
    DECODERS = ('megvii', 'mmpose_megvii', 'quarter', 'dark', 'argmax')
    SCORE = 'heatmap value / 255 + 0.5'

    def __init__(self, input_hw, output_hw, decoder='megvii', decoder_params=None, kernels=None):
        super().__init__(input_hw, output_hw, decoder, decoder_params)
        self.kernels = None if kernels is None else list(kernels)

    def score(self, peak_values):
        return np.asarray(peak_values, np.float64) / 255 + 0.5

    def encode(self, keypoints, visible):
        """Targets of one crop.

        Args:
            keypoints: (K, 2+) input-crop pixels (x, y); joints with ``visible >= 1`` must lie inside the crop.
            visible: (K,) visibility 0/1/2 (the loss weight, passed through).
        Returns:
            dict(heatmaps float32 (L, K, h, w) peak 255, L = len(kernels); keypoint_weights float32 (K,)).
        """
        if self.kernels is None:
            raise ValueError('%s.encode needs kernels (DATASET.TRAIN.GAUSSIAN_KERNELS)' % type(self).__name__)
        weights = np.asarray(visible, np.float32).reshape(-1)
        heatmaps = blurred_peak_targets(keypoints, weights, self.input_hw, self.output_hw, self.kernels)
        return dict(heatmaps=heatmaps, keypoint_weights=weights)

    def round_trip_tolerance(self):
        """Floor placement (half a cell) plus the megvii decoder's shift toward the second maximum (shift_ratio
        cells); same conditions as :meth:`HeatmapCodec.round_trip_tolerance`."""
        shift = float(self.decoder_params.get('shift_ratio', 0.0)) if self.decoder == 'megvii' else 0.0
        return (0.5 + shift) * max(self.stride)


class CPNHeatmap(MegviiHeatmap):
    """MLPE / pytorch-cpn targets: the Megvii encoding (floor cell, blurred, peak 255) with CPN's kernels
    (23, 17, 13, 9 at 256x192) and decoder (Megvii's with kernel 21, ``u = 4 x + 2``). MLPE's test divides each
    map by its maximum before blurring; we blur the raw map, which picks the same peak when the maximum is
    positive and the true maximum when it is not."""
    name = 'cpn'


class MSRAHeatmap(HeatmapCodec):
    """Simple Baselines / HSRNet targets: unnormalised Gaussian ``exp(-d^2 / 2 sigma^2)``, peak 1, at the
    rounded cell ``int(x / s + 0.5)``. Frame: ``x = c * s``. Score: the heatmap maximum. Decoders: quarter
    (Simple Baselines' ``get_final_preds``), dark (DARK), argmax; the Megvii decoders' ``/ 255 + 0.5`` rule
    does not apply to unit peaks and is refused."""
    name = 'msra'
    PEAK = 1.0
    CELL_OFFSET = 0.0
    DECODERS = ('quarter', 'dark', 'argmax')
    SCORE = 'heatmap maximum'

    def __init__(self, input_hw, output_hw, decoder='quarter', decoder_params=None, sigma=None):
        super().__init__(input_hw, output_hw, decoder, decoder_params)
        self.sigma = sigma

    def encode(self, keypoints, visible):
        """Targets of one crop: keypoints (K, 2+) input-crop pixels, visible (K,) 0/1.

        Returns dict(heatmaps float32 (K, h, w) peak 1; keypoint_weights float32 (K,), 0 where the Gaussian lies
        completely outside the map).
        """
        if self.sigma is None:
            raise ValueError('MSRAHeatmap.encode needs sigma (DATASET.TRAIN.SIGMA)')
        heatmaps, weights = gaussian_targets(keypoints, visible, self.input_hw, self.output_hw, self.sigma)
        return dict(heatmaps=heatmaps, keypoint_weights=weights)


CODECS = {'megvii': MegviiHeatmap, 'cpn': CPNHeatmap, 'msra': MSRAHeatmap}


def build_codec(cfg):
    """The codec named by ``cfg.CODEC``, with TEST.DECODER and its parameters (``decoder_kwargs``) and, when the
    config has a training block, the encoder's DATASET.TRAIN.GAUSSIAN_KERNELS (megvii, cpn) or SIGMA (msra)."""
    name = cfg.CODEC
    if name not in CODECS:
        raise KeyError('CODEC %r is not a heatmap codec; known: %s (set by the preset)' % (name, sorted(CODECS)))
    cls = CODECS[name]
    cls.check_decoder(cfg.TEST.DECODER)        # before reading the decoder's keys, which another codec's preset lacks
    decoder, params = decoder_kwargs(cfg)
    params.pop('stride')                       # the codec's own, from INPUT_SHAPE / OUTPUT_SHAPE
    train = cfg.DATASET.get('TRAIN')           # absent in inference-only configs: encode() then says what is missing
    if cls is MSRAHeatmap:
        extra = dict(sigma=train.SIGMA if train else None)
    else:
        extra = dict(kernels=train.GAUSSIAN_KERNELS if train else None)
    return cls(cfg.INPUT_SHAPE, cfg.OUTPUT_SHAPE, decoder, params, **extra)

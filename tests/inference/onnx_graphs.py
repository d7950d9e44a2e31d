"""Tiny ONNX heatmap graphs written by the tests (nothing exported or downloaded): one 4x4 stride-4 convolution
images (N, 3, H, W) -> heatmaps (N, K, H/4, W/4), the stride of the exps' networks, with chosen dims and
cvpack metadata."""
import json

import numpy as np


def conv_onnx(path, input_shape=('N', 3, 256, 192), keypoints=17, exp=None, overrides=None, seed=0):
    """Write the graph to ``path`` (str dims are symbolic, ints fixed); ``exp`` / ``overrides``: the
    'cvpack.exp' / 'cvpack.cfg_overrides' metadata as cvpack.tools.export writes it. Returns str(path)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    weight = np.random.RandomState(seed).uniform(0, 0.05, (keypoints if isinstance(keypoints, int) else 17, 3, 4, 4))
    n, _, h, w = input_shape
    out_shape = [n, keypoints, h // 4 if isinstance(h, int) else 'h', w // 4 if isinstance(w, int) else 'w']
    graph = helper.make_graph(
        [helper.make_node('Conv', ['images', 'w'], ['heatmaps'], strides=[4, 4])], 'heatmaps',
        [helper.make_tensor_value_info('images', TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info('heatmaps', TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(weight.astype(np.float32), 'w')])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    for key, value in (('cvpack.exp', exp), ('cvpack.cfg_overrides', None if overrides is None else
                                             json.dumps(overrides))):
        if value is not None:
            prop = model.metadata_props.add()
            prop.key, prop.value = key, value
    onnx.save(model, str(path))
    return str(path)

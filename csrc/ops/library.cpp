// The one list of dsconv op schemas. Kernels register against these names per dispatch
// key (CPU in this folder, CUDA when built); fake kernels and autograd are registered
// from Python (dsconv_ext/_fake.py, dsconv_ext/_autograd.py).
//
// padding is always explicit [top, bottom, left, right]: the Python API resolves ints,
// pairs, 'same' (which may be asymmetric) and 'valid' into it.
#include <torch/library.h>

TORCH_LIBRARY(dsconv, m) {
  const std::vector<at::Tag> tags{at::Tag::pt2_compliant_tag};
  m.def(
      "depthwise(Tensor x, Tensor weight, Tensor? bias=None, int[2] stride=[1, 1], "
      "int[4] padding=[0, 0, 0, 0], int[2] dilation=[1, 1], str? activation=None) -> Tensor",
      tags);
  m.def(
      "depthwise_backward_input(Tensor grad_out, Tensor weight, int[4] input_size, "
      "int[2] stride, int[4] padding, int[2] dilation) -> Tensor",
      tags);
  m.def(
      "depthwise_backward_weight(Tensor grad_out, Tensor x, int[4] weight_size, "
      "int[2] stride, int[4] padding, int[2] dilation) -> Tensor",
      tags);
  m.def(
      "pointwise(Tensor x, Tensor weight, Tensor? bias=None, str? activation=None, "
      "Tensor? residual=None) -> Tensor",
      tags);
  m.def("pointwise_backward_input(Tensor grad_out, Tensor weight) -> Tensor", tags);
  m.def("pointwise_backward_weight(Tensor grad_out, Tensor x) -> Tensor", tags);
  m.def(
      "separable(Tensor x, Tensor dw_weight, Tensor pw_weight, Tensor? dw_bias=None, "
      "Tensor? pw_bias=None, int[2] stride=[1, 1], int[4] padding=[0, 0, 0, 0], "
      "int[2] dilation=[1, 1], str? dw_activation=None, str? pw_activation=None) -> Tensor",
      tags);
  // A dense convolution (groups=1) with fused bias and activation, for the networks' first
  // layer: an indirect GEMM over packed weights (csrc/cpu/simd/conv.h).
  m.def(
      "conv2d(Tensor x, Tensor weight, Tensor? bias=None, int[2] stride=[1, 1], "
      "int[4] padding=[0, 0, 0, 0], int[2] dilation=[1, 1], str? activation=None) -> Tensor",
      tags);
  // expand_weight None: no expand stage (expansion 1); project_weight None: the output is
  // the depthwise stage's (a squeeze-excite block continues from there). residual adds x.
  m.def(
      "inverted_residual(Tensor x, Tensor? expand_weight, Tensor dw_weight, "
      "Tensor? project_weight, Tensor? expand_bias=None, Tensor? dw_bias=None, "
      "Tensor? project_bias=None, int[2] stride=[1, 1], int[4] padding=[0, 0, 0, 0], "
      "int[2] dilation=[1, 1], str? expand_activation=None, str? dw_activation=None, "
      "str? project_activation=None, bool residual=False) -> Tensor",
      tags);
  // y = x * gate(expand(act(reduce(mean over H, W of x)))): reduce_weight [S, C, 1, 1],
  // expand_weight [C, S, 1, 1] (1x1 convolutions on the 1x1 map of channel means).
  m.def(
      "squeeze_excite(Tensor x, Tensor reduce_weight, Tensor? reduce_bias, "
      "Tensor expand_weight, Tensor? expand_bias, str? activation=\"relu\", "
      "str gate=\"hardsigmoid\") -> Tensor",
      tags);
  // The mean of each channel over H and W: [N, C, 1, 1] (F.adaptive_avg_pool2d(x, 1)).
  m.def("global_avg_pool(Tensor x) -> Tensor", tags);
}

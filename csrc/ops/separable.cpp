// CPU implementation of dsconv::separable: depthwise -> bias -> act -> pointwise -> bias
// -> act in one pass over tiles of output pixels (csrc/cpu/separable.h); the depthwise output lives
// only in a per-thread tile of at most max(256 KiB, one intermediate row) plus
// one row (separable_tiling).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <utility>

#include "../cpu/dispatch.h"
#include "../cpu/separable.h"
#include "checks.h"
#include "depthwise.h"
#include "packing.h"
#include "tensor_shapes.h"
#include "tile_buffer.h"

namespace dsconv::ops {
namespace {

at::Tensor separable_cpu(const at::Tensor& x, const at::Tensor& dw_weight,
                         const at::Tensor& pw_weight, const std::optional<at::Tensor>& dw_bias,
                         const std::optional<at::Tensor>& pw_bias, at::IntArrayRef stride,
                         at::IntArrayRef padding, at::IntArrayRef dilation,
                         std::optional<c10::string_view> dw_activation,
                         std::optional<c10::string_view> pw_activation) {
  clear_kernel_record();
  const SeparableCall c = prepare_separable(x, dw_weight, pw_weight, dw_bias, pw_bias, stride,
                                            padding, dilation, dw_activation, pw_activation);
  const DepthwiseCall& call = c.dw;
  const DwShape& dw = call.shape;
  PwShape pw = c.pw;
  const at::Tensor y = empty_separable_output(c);
  const at::Tensor &wpw = c.pw_weight, &bpw = c.pw_bias;
  if (y.numel() == 0) return y;
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "dsconv::separable", [&] {
    using Kernels = KernelTypes<scalar_t>;
    const KernelEntry* dw_entry = select_kernel(dw_query(Op::dw_forward, dtype_of<scalar_t>(), dw));
    const KernelEntry* pw_entry = select_kernel(pw_query(Op::pw_forward, dtype_of<scalar_t>(), pw));
    const auto dw_kernel = kernel_fn<typename Kernels::DwForward>(dw_entry);
    const auto pw_kernel = kernel_fn<typename Kernels::PwForward>(pw_entry);
    at::Tensor dw_packed, pw_packed;
    const scalar_t* wdw = kernel_weight<scalar_t>(dw_entry, dw, call.weight, dw_packed);
    const scalar_t* wpwp = pw_kernel_weight<scalar_t>(pw_entry, pw, wpw, pw_packed);
    const scalar_t* xp = call.x.const_data_ptr<scalar_t>();
    const scalar_t* bdw = call.bias.defined() ? call.bias.const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* bpwp = bpw.defined() ? bpw.const_data_ptr<scalar_t>() : nullptr;
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    const SeparableTiling tiling =
        separable_tiling<scalar_t>(dw, pw.out_channels, at::get_num_threads());
    const int64_t tile_work = tiling.max_rows * dw.out_w * dw.out_channels() *
                              (dw.kernel_h * dw.kernel_w + pw.out_channels);
    at::parallel_for(0, dw.batch * tiling.tiles, grain_for(tile_work), [&](int64_t begin,
                                                                           int64_t end) {
      TileBuffer<scalar_t> buffer;
      scalar_t* tile = buffer.get(separable_tile_elems<scalar_t>(dw, tiling.max_rows));
      for (int64_t t = begin; t < end; ++t) {
        const int64_t n = t / tiling.tiles, i = t % tiling.tiles;
        separable_forward_tile<scalar_t>(dw, pw, dw_kernel, pw_kernel, xp + n * dw.x_ns, wdw, bdw,
                                         wpwp, bpwp, yp + n * pw.y_ns, tiling.begin(i),
                                         tiling.begin(i + 1), tile);
      }
    });
  });
  return y;
}

}  // namespace

SeparableCall prepare_separable(const at::Tensor& x, const at::Tensor& dw_weight,
                                const at::Tensor& pw_weight,
                                const std::optional<at::Tensor>& dw_bias,
                                const std::optional<at::Tensor>& pw_bias, at::IntArrayRef stride,
                                at::IntArrayRef padding, at::IntArrayRef dilation,
                                std::optional<c10::string_view> dw_activation,
                                std::optional<c10::string_view> pw_activation) {
  const Activation dw_act = check_activation(dw_activation, "dw_activation");
  const Activation pw_act = check_activation(pw_activation, "pw_activation");
  DepthwiseCall call = prepare_depthwise(x, dw_weight, dw_bias, "dw_weight", "dw_bias", stride,
                                         padding, dilation, dw_act);
  const DwShape& dw = call.shape;
  check_separable_pw(pw_weight, pw_bias, dw.out_channels(), x);
  const PwShape pw = make_pw_shape(dw.batch, dw.out_channels(), pw_weight.size(0), dw.out_h,
                                   dw.out_w, pw_act, dw.layout);
  return SeparableCall{std::move(call), pw, dense_pw_weight(pw_weight),
                       contiguous_or_undefined(pw_bias)};
}

at::Tensor empty_separable_output(const SeparableCall& c) {
  const DwShape& dw = c.dw.shape;
  return at::empty({dw.batch, c.pw.out_channels, dw.out_h, dw.out_w},
                   c.dw.x.options().memory_format(memory_format(dw.layout)));
}

TORCH_LIBRARY_IMPL(dsconv, CPU, m) { m.impl("separable", &separable_cpu); }

}  // namespace dsconv::ops

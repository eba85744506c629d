// CPU implementation of dsconv::inverted_residual: expand -> act -> depthwise -> act ->
// project (-> + x) in one pass over tiles of output rows (csrc/cpu/inverted_residual.h).
// Neither the expanded tensor nor the depthwise output is written to memory; each thread
// holds a row buffer and a depthwise tile of at most kIrTileBytes together, scaled to the
// L2 size (csrc/cpu/cache_sizes.h; more only when a single row needs it). On several
// threads, images too short to share out in row tiles and small blocks without a project
// stage run the stages one after the other (stages_beat_row_tiles).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/add.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "../cpu/dispatch.h"
#include "../cpu/inverted_residual.h"
#include "checks.h"
#include "depthwise.h"
#include "inverted_residual.h"
#include "packing.h"
#include "tensor_shapes.h"
#include "tile_buffer.h"

namespace dsconv::ops {

at::Tensor inverted_residual_composite(const at::Tensor& x, const OptTensor& expand_weight,
                                       const at::Tensor& dw_weight,
                                       const OptTensor& project_weight,
                                       const OptTensor& expand_bias, const OptTensor& dw_bias,
                                       const OptTensor& project_bias, at::IntArrayRef stride,
                                       at::IntArrayRef padding, at::IntArrayRef dilation,
                                       OptString expand_activation, OptString dw_activation,
                                       OptString project_activation, bool residual) {
  // This op's checks first, so errors name its arguments rather than the chain's.
  const bool e_act = check_activation(expand_activation, "expand_activation") != Activation::none;
  check_activation(dw_activation, "dw_activation");
  const bool p_act = check_activation(project_activation, "project_activation") != Activation::none;
  check_inverted_residual(x, expand_weight, dw_weight, project_weight, expand_bias, dw_bias,
                          project_bias, stride, padding, dilation, e_act, p_act, residual);
  const KernelRecordScope record;  // last_kernels() lists the stages' kernels
  const Ops& ops = Ops::get();
  const bool has_expand = expand_weight.has_value() && expand_weight->defined();
  const bool has_project = project_weight.has_value() && project_weight->defined();
  const at::Tensor e =
      has_expand ? ops.pointwise.call(x, *expand_weight, expand_bias, expand_activation, OptTensor()) : x;
  at::Tensor y = has_project
                     ? ops.separable.call(e, dw_weight, *project_weight, dw_bias, project_bias,
                                          stride, padding, dilation, dw_activation,
                                          project_activation)
                     : ops.depthwise.call(e, dw_weight, dw_bias, stride, padding, dilation,
                                          dw_activation);
  return residual ? at::add(y, x) : y;
}

namespace {

bool given(const OptTensor& t) { return t.has_value() && t->defined(); }

// Expanded images up to which a block without a project stage runs as stages on several
// threads (stages_beat_row_tiles): about L2 (for a 512 KiB L2; scaled to the CPU's).
constexpr int64_t kIrStagesMaxExpandedBytes = 1 << 20;

// Whether several threads run the block faster as its stages one after the other (the
// composite, each stage split evenly: the expand GEMM by pixels, the depthwise or separable
// stage by rows) than as row tiles, where the first tile of each thread expands its
// depthwise window's halo rows again:
// - the batch's output rows are too few to keep every thread busy (7 rows split 4:3); the
//   expanded tensor is then small enough to stay in L2. MobileNetV2/V3's 7x7 blocks on 2
//   threads: 1.12-1.19x faster;
// - a block without a project stage (it ends where a squeeze-excite follows) whose image is
//   split between threads, with an expanded image that fits in L2: the row tiles only save
//   that tensor's round trip through L2, and pay the halo rows (MobileNetV3-Large's five
//   such blocks on 2 threads: 1.04-1.12x faster; on 1 thread the row tiles stay 1.00-1.02x
//   faster).
bool stages_beat_row_tiles(int64_t batch, int64_t out_h, bool has_project,
                           int64_t expanded_image_bytes, int64_t threads) {
  if (threads <= 1) return false;
  if (batch * out_h < 4 * threads) return true;
  return !has_project && batch < threads && expanded_image_bytes <= l2_scaled(kIrStagesMaxExpandedBytes);
}

at::Tensor inverted_residual_cpu(const at::Tensor& x, const OptTensor& expand_weight,
                                 const at::Tensor& dw_weight, const OptTensor& project_weight,
                                 const OptTensor& expand_bias, const OptTensor& dw_bias,
                                 const OptTensor& project_bias, at::IntArrayRef stride,
                                 at::IntArrayRef padding, at::IntArrayRef dilation,
                                 OptString expand_activation, OptString dw_activation,
                                 OptString project_activation, bool residual) {
  clear_kernel_record();
  const Activation e_act = check_activation(expand_activation, "expand_activation");
  const Activation d_act = check_activation(dw_activation, "dw_activation");
  const Activation p_act = check_activation(project_activation, "project_activation");
  const IrGeometry geo = check_inverted_residual(
      x, expand_weight, dw_weight, project_weight, expand_bias, dw_bias, project_bias, stride,
      padding, dilation, e_act != Activation::none, p_act != Activation::none, residual);
  auto stages = [&](const at::Tensor& input) {  // the ops one after the other
    return inverted_residual_composite(input, expand_weight, dw_weight, project_weight,
                                       expand_bias, dw_bias, project_bias, stride, padding,
                                       dilation, expand_activation, dw_activation,
                                       project_activation, residual);
  };
  if (x.numel() == 0) return stages(x);  // possibly a non-empty (all-padding) output
  // Computed in NHWC whatever x's layout: an NCHW caller's x and y are transposed once,
  // which costs less than the NCHW kernels' per-channel work on the expanded tensor
  // (measured on the MobileNetV2 blocks: 1.0-1.3x faster, 1.18x over all of them).
  const Layout layout = Layout::nhwc;
  const bool nchw_caller = layout_of(x) == Layout::nchw;
  const int64_t batch = x.size(0), in_h = x.size(2), in_w = x.size(3);
  const at::Tensor xc = x.contiguous(memory_format(layout));
  const int64_t expanded_image_bytes = in_h * in_w * geo.expanded * x.element_size();
  if (stages_beat_row_tiles(batch, geo.g.out_h, given(project_weight), expanded_image_bytes,
                            at::get_num_threads())) {
    const at::Tensor y = stages(xc);
    return nchw_caller ? y.contiguous() : y;
  }
  at::Tensor y = at::empty({batch, geo.out, geo.g.out_h, geo.g.out_w},
                           x.options().memory_format(memory_format(layout)));
  if (y.numel() == 0) return nchw_caller ? y.contiguous() : y;
  IrShape s{};
  s.has_expand = given(expand_weight), s.has_project = given(project_weight);
  s.residual = residual;
  if (s.has_expand) s.expand = make_pw_shape(batch, x.size(1), geo.expanded, in_h, in_w, e_act, layout);
  // Its x strides are those of a dense expanded image: x's own without an expand stage
  // (geo.expanded is then x's channel count); the driver sets the row buffer's otherwise.
  s.dw = make_dw_shape(batch, geo.expanded, dw_multiplier(geo.expanded, geo.mid), in_h, in_w,
                       geo.g, d_act, layout);
  if (s.has_project) {
    s.project = make_pw_shape(batch, geo.mid, geo.out, geo.g.out_h, geo.g.out_w, p_act, layout);
  }
  const at::Tensor dw_w = dw_weight.contiguous();
  const at::Tensor ew = s.has_expand ? dense_pw_weight(*expand_weight) : at::Tensor();
  const at::Tensor pw = s.has_project ? dense_pw_weight(*project_weight) : at::Tensor();
  const at::Tensor eb = contiguous_or_undefined(expand_bias);
  const at::Tensor db = contiguous_or_undefined(dw_bias);
  const at::Tensor pb = contiguous_or_undefined(project_bias);
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "dsconv::inverted_residual", [&] {
    using Kernels = KernelTypes<scalar_t>;
    const DType dtype = dtype_of<scalar_t>();
    IrKernels<scalar_t> k{};
    IrWeights<scalar_t> w{};
    auto ptr = [](const at::Tensor& t) { return t.defined() ? t.const_data_ptr<scalar_t>() : nullptr; };
    at::Tensor e_packed, d_packed, p_packed;
    if (s.has_expand) {
      const KernelEntry* entry = select_kernel(pw_query(Op::pw_forward, dtype, s.expand));
      k.expand = kernel_fn<typename Kernels::PwForward>(entry);
      w.expand = pw_kernel_weight<scalar_t>(entry, s.expand, ew, e_packed);
    }
    const KernelEntry* dw_entry = select_kernel(dw_query(Op::dw_forward, dtype, s.dw));
    k.dw = kernel_fn<typename Kernels::DwForward>(dw_entry);
    w.dw = kernel_weight<scalar_t>(dw_entry, s.dw, dw_w, d_packed);
    if (s.has_project) {
      const KernelEntry* entry = select_kernel(pw_query(Op::pw_forward, dtype, s.project));
      k.project = kernel_fn<typename Kernels::PwForward>(entry);
      w.project = pw_kernel_weight<scalar_t>(entry, s.project, pw, p_packed);
    }
    w.expand_bias = ptr(eb), w.dw_bias = ptr(db), w.project_bias = ptr(pb);
    const scalar_t* xp = xc.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    const IrTiling tiling = ir_tiling<scalar_t>(s, at::get_num_threads());
    const int64_t x_image = xc.size(1) * in_h * in_w;
    const int64_t y_image = geo.out * geo.g.out_h * geo.g.out_w;
    const int64_t tile_rows = (geo.g.out_h + tiling.tiles - 1) / tiling.tiles;
    const int64_t tile_work = tile_rows * geo.g.out_w * geo.mid *
                              (x.size(1) + dw_weight.size(2) * dw_weight.size(3) + geo.out);
    at::parallel_for(0, batch * tiling.tiles, grain_for(tile_work), [&](int64_t begin, int64_t end) {
      TileBuffer<scalar_t> buffer;
      scalar_t* scratch = buffer.get(tiling.buffer_elems + tiling.dw_tile_elems);
      ExpandedRows<scalar_t> rows{scratch, tiling.buffer_rows};
      for (int64_t t = begin; t < end; ++t) {
        const int64_t n = t / tiling.tiles, i = t % tiling.tiles;
        const int64_t oy0 = tiling.begin(i), oy1 = tiling.begin(i + 1);
        inverted_residual_rows<scalar_t>(s, k, w, xp + n * x_image, yp + n * y_image, n, oy0,
                                         oy1, rows, scratch + tiling.buffer_elems);
      }
    });
  });
  return nchw_caller ? y.contiguous() : y;
}

}  // namespace

TORCH_LIBRARY_IMPL(dsconv, CPU, m) { m.impl("inverted_residual", &inverted_residual_cpu); }

}  // namespace dsconv::ops

// Native tests of the fused inverted-residual driver (csrc/cpu/inverted_residual.h, which
// runs the fused separable tile of csrc/cpu/separable.h): for every kernel set this CPU
// runs, the driver with the kernels dispatch selects, over tiles of 1, 2, 3 and 5 output
// rows (so consecutive tiles share halo rows), against the f64 scalar reference kernels
// chained over whole images. Both layouts, strides 1 and 2, 3x3 and 5x5, with and without
// the expand and project stages and the residual.
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "../../csrc/cpu/inverted_residual.h"
#include "../../csrc/cpu/kernel_decls.h"
#include "problems.h"

namespace dsconv::native {
namespace {

struct Block {
  int64_t cin, mid, cout, h, w, k, stride;
  bool expand, project, residual;
  Layout layout;
};

PwShape pw_shape(int64_t batch, int64_t cin, int64_t cout, int64_t h, int64_t w, Activation act,
                 Layout layout) {
  const Strides xs = dense_strides(cin, h, w, layout), ys = dense_strides(cout, h, w, layout);
  return PwShape{batch, cin, cout, h * w, xs.n, xs.c, xs.w, ys.n, ys.c, ys.w, act, layout};
}

DwShape dw_shape(const Block& b, int64_t batch, Activation act) {
  const int64_t pad = b.k / 2, oh = (b.h + 2 * pad - b.k) / b.stride + 1;
  const int64_t ow = (b.w + 2 * pad - b.k) / b.stride + 1;
  const Strides xs = dense_strides(b.mid, b.h, b.w, b.layout);
  const Strides ys = dense_strides(b.mid, oh, ow, b.layout);
  return DwShape{batch, b.mid, 1, b.h, b.w, oh, ow, b.k, b.k, b.stride, b.stride, pad, pad, 1, 1,
                 xs.n, xs.c, xs.h, xs.w, ys.n, ys.c, ys.h, ys.w, act, b.layout};
}

const KernelEntry* reference(Op op) {
  int count = 0;
  const KernelEntry* all = kernel_registry(&count);
  for (int i = 0; i < count; ++i) {
    if (all[i].op == op && all[i].isa == Isa::scalar && all[i].dtype == DType::f64) return &all[i];
  }
  return nullptr;
}

// The block in f64 by the reference kernels, whole images; with `magnitude`, on absolute
// values without activations (the rounding bound's scale).
std::vector<double> chain(const IrShape& s, const std::vector<double>& x,
                          const std::vector<double> (&w)[6], bool magnitude) {
  const auto pw = kernel_fn<KernelTypes<double>::PwForward>(reference(Op::pw_forward));
  const auto dw = kernel_fn<KernelTypes<double>::DwForward>(reference(Op::dw_forward));
  auto val = [&](const std::vector<double>& v) {
    std::vector<double> out(v);
    if (magnitude) {
      for (double& e : out) e = std::fabs(e);
    }
    return out;
  };
  const int64_t batch = s.dw.batch;
  std::vector<double> xin = val(x);
  std::vector<double> e = xin;
  if (s.has_expand) {
    PwShape p = s.expand;
    if (magnitude) p.activation = Activation::none;
    e.assign(static_cast<size_t>(batch * p.y_ns), 0.0);
    for (int64_t n = 0; n < batch; ++n) {
      pw(p, xin.data() + n * p.x_ns, val(w[0]).data(), val(w[1]).data(), e.data() + n * p.y_ns, p.pixels);
    }
  }
  DwShape d = s.dw;
  if (magnitude) d.activation = Activation::none;
  std::vector<double> m(static_cast<size_t>(batch * d.y_ns));
  for (int64_t n = 0; n < batch; ++n) {
    dw(d, e.data() + n * d.x_ns, val(w[2]).data(), val(w[3]).data(), m.data() + n * d.y_ns, 0, d.out_h);
  }
  std::vector<double> y = m;
  if (s.has_project) {
    PwShape p = s.project;
    if (magnitude) p.activation = Activation::none;
    y.assign(static_cast<size_t>(batch * p.y_ns), 0.0);
    for (int64_t n = 0; n < batch; ++n) {
      pw(p, m.data() + n * p.x_ns, val(w[4]).data(), val(w[5]).data(), y.data() + n * p.y_ns, p.pixels);
    }
  }
  if (s.residual) {
    for (size_t i = 0; i < y.size(); ++i) y[i] += xin[i];
  }
  return y;
}

template <typename Pack, typename Shape>
std::vector<float> packed(const KernelEntry* e, const Shape& shape, const std::vector<float>& w) {
  if (e->pack == nullptr) return w;
  const auto pack = reinterpret_cast<Pack>(e->pack);
  std::vector<float> out(static_cast<size_t>(pack(shape, w.data(), nullptr)));
  pack(shape, w.data(), out.data());
  return out;
}

// "" when the driver matches the reference on block b with `rows` output rows per tile.
std::string check(const Block& b, int64_t rows, uint64_t seed) {
  const int64_t batch = 2;
  IrShape s{};
  s.has_expand = b.expand, s.has_project = b.project, s.residual = b.residual;
  s.dw = dw_shape(b, batch, Activation::relu6);
  if (b.expand) s.expand = pw_shape(batch, b.cin, b.mid, b.h, b.w, Activation::hardswish, b.layout);
  if (b.project) {
    s.project = pw_shape(batch, b.mid, b.cout, s.dw.out_h, s.dw.out_w, Activation::none, b.layout);
  }
  if (!b.expand) {  // the depthwise stage reads x
    const Strides xs = dense_strides(b.cin, b.h, b.w, b.layout);
    s.dw.x_ns = xs.n, s.dw.x_cs = xs.c, s.dw.x_hs = xs.h, s.dw.x_ws = xs.w;
  }
  Rng rng(seed);
  const std::vector<float> x = rng.fill(batch * b.cin * b.h * b.w);
  std::vector<float> w[6] = {rng.fill(b.mid * b.cin), rng.fill(b.mid), rng.fill(b.mid * b.k * b.k),
                             rng.fill(b.mid), rng.fill(b.cout * b.mid), rng.fill(b.cout)};
  std::vector<double> wd[6];
  for (int i = 0; i < 6; ++i) wd[i] = to_double(w[i]);
  const std::vector<double> want = chain(s, to_double(x), wd, false);
  const std::vector<double> bound = chain(s, to_double(x), wd, true);

  const KernelQuery pwq{Op::pw_forward, DType::f32, b.layout};
  KernelQuery dwq{Op::dw_forward, DType::f32, b.layout};
  dwq.kernel_h = dwq.kernel_w = b.k, dwq.stride_h = dwq.stride_w = b.stride;
  const KernelEntry *pe = select_kernel(pwq), *de = select_kernel(dwq);
  IrKernels<float> k{kernel_fn<KernelTypes<float>::PwForward>(pe),
                     kernel_fn<KernelTypes<float>::PwForward>(pe),
                     kernel_fn<KernelTypes<float>::DwForward>(de)};
  using PwPack = KernelTypes<float>::PwPack;
  const std::vector<float> we = b.expand ? packed<PwPack>(pe, s.expand, w[0]) : w[0];
  const std::vector<float> wdw = packed<KernelTypes<float>::DwPack>(de, s.dw, w[2]);
  const std::vector<float> wp = b.project ? packed<PwPack>(pe, s.project, w[4]) : w[4];
  const IrWeights<float> iw{we.data(), w[1].data(), wdw.data(), w[3].data(), wp.data(), w[5].data()};

  const int64_t out_c = b.project ? b.cout : b.mid;
  Output out(batch * out_c * s.dw.out_h * s.dw.out_w);
  const int64_t cap = s.has_expand ? ir_input_rows(s.dw, rows) : 0;
  // The driver's own scratch sizes (padded NHWC pixel strides), in the op's aligned storage,
  // NaN-filled: a kernel that read the padding or a row it did not write would show it.
  const int64_t row_buffer = s.has_expand ? ir_row_buffer_elems<float>(s.dw, cap) : 0;
  AlignedVector<float> buffer(static_cast<size_t>(row_buffer + separable_tile_elems<float>(s.dw, rows) + 1),
                              std::numeric_limits<float>::quiet_NaN());
  ExpandedRows<float> held{buffer.data(), cap};
  const int64_t y_image = out_c * s.dw.out_h * s.dw.out_w, x_image = b.cin * b.h * b.w;
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t oy = 0; oy < s.dw.out_h; oy += rows) {
      inverted_residual_rows<float>(s, k, iw, x.data() + n * x_image, out.data() + n * y_image, n, oy,
                                    std::min(s.dw.out_h, oy + rows), held,
                                    buffer.data() + row_buffer);
    }
  }
  return compare(out, want, bound, [](int64_t) { return true; });
}

}  // namespace

// Runs every case for every kernel set this CPU runs; returns the number of failed cases.
int64_t fused_driver_tests(int64_t* cases) {
  const std::vector<Block> blocks = {
      {8, 24, 8, 13, 11, 3, 1, true, true, true, Layout::nhwc},
      {8, 24, 8, 13, 11, 3, 1, true, true, true, Layout::nchw},
      {5, 30, 7, 14, 17, 3, 2, true, true, false, Layout::nhwc},
      {5, 30, 7, 14, 17, 3, 2, true, true, false, Layout::nchw},
      {6, 18, 6, 12, 9, 5, 1, true, true, true, Layout::nhwc},
      {6, 18, 6, 15, 9, 5, 2, true, false, false, Layout::nchw},
      {16, 16, 16, 11, 10, 3, 1, false, true, true, Layout::nhwc},
      {12, 12, 9, 11, 10, 3, 2, false, true, false, Layout::nchw},
      {3, 33, 3, 9, 7, 3, 1, true, false, false, Layout::nhwc},
  };
  const std::string restore = isa_name(active_isa());
  int64_t failed = 0;
  const std::string isas = supported_isas();
  size_t start = 0;
  while (start <= isas.size()) {
    const size_t end = std::min(isas.find(',', start), isas.size());
    const std::string isa = isas.substr(start, end - start);
    start = end + 1;
    if (!set_active_isa(isa).empty()) continue;
    int64_t isa_cases = 0, isa_failed = 0;
    uint64_t seed = 1;
    for (const Block& b : blocks) {
      for (int64_t rows : {1, 2, 3, 5}) {
        const std::string err = check(b, rows, seed++);
        ++isa_cases;
        if (!err.empty()) {
          ++isa_failed;
          std::printf("  FAIL %s: cin %lld mid %lld cout %lld %lldx%lld k%lld s%lld %s%s%s %s, %lld rows per tile: %s\n",
                      isa.c_str(), (long long)b.cin, (long long)b.mid, (long long)b.cout, (long long)b.h,
                      (long long)b.w, (long long)b.k, (long long)b.stride, b.expand ? "expand " : "",
                      b.project ? "project " : "", b.residual ? "residual" : "",
                      b.layout == Layout::nhwc ? "nhwc" : "nchw", (long long)rows, err.c_str());
        }
      }
    }
    std::printf("%-40s %-20s %6lld cases  %s\n", ("inverted_residual driver, " + isa).c_str(),
                "fused", (long long)isa_cases, isa_failed == 0 ? "ok" : "FAIL");
    *cases += isa_cases;
    failed += isa_failed;
  }
  set_active_isa(restore);
  return failed;
}

}  // namespace dsconv::native

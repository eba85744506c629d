#include "problems.h"

#include <algorithm>
#include <cstdio>
#include <initializer_list>

namespace dsconv::native {
namespace {

constexpr int kChannels = 33, kWidths = 17;
constexpr int64_t kWideWidths[] = {18, 21, 26, 35, 41};
const int64_t kHeights[] = {1, 3, 5, 7, 9};
const Activation kActivations[] = {Activation::none, Activation::relu, Activation::relu6,
                                   Activation::hardswish};

std::vector<int64_t> fixed_or(int fixed, std::initializer_list<int64_t> options) {
  if (fixed != 0) return {fixed};
  return options;
}

std::vector<Layout> layouts_of(const KernelEntry& e) {
  if (e.layout < 0) return {Layout::nchw, Layout::nhwc};
  return {static_cast<Layout>(e.layout)};
}

template <typename T>
const T& pick(const std::vector<T>& v, Rng& rng) {
  return v[static_cast<size_t>(rng.below(static_cast<int64_t>(v.size())))];
}

struct DwGeometry {
  int64_t kh, kw, sh, sw, dil, mult;
};

std::vector<DwGeometry> dw_geometries(const KernelEntry& e) {
  std::vector<std::pair<int64_t, int64_t>> kernels;
  if (e.kernel_h != 0 && e.kernel_w != 0) {
    kernels = {{e.kernel_h, e.kernel_w}};
  } else {
    kernels = {{1, 1}, {3, 3}, {2, 3}, {3, 1}, {5, 5}, {1, 7}, {7, 7}};
  }
  std::vector<DwGeometry> out;
  for (auto [kh, kw] : kernels) {
    for (int64_t sh : fixed_or(e.stride_h, {1, 2, 3})) {
      for (int64_t sw : fixed_or(e.stride_w, {1, 2, 3})) {
        for (int64_t dil : fixed_or(e.dilation, {1, 2})) {
          for (int64_t mult : fixed_or(e.multiplier, {1, 2, 3})) out.push_back({kh, kw, sh, sw, dil, mult});
        }
      }
    }
  }
  return out;
}

// Padding modes: none, "same" (symmetric), and lopsided (all on the top/left plus one
// on the bottom/right), so border columns and rows appear on one side only.
void pads_for(int mode, int64_t span, int64_t* before, int64_t* after) {
  *before = mode == 0 ? 0 : mode == 1 ? span / 2 : span;
  *after = mode == 0 ? 0 : mode == 1 ? span / 2 : 1;
}

// The padding of `pad_mode` for geometry g and the output size it gives; false when the
// kernel does not fit the padded input.
bool padded_output(const DwGeometry& g, int64_t in_h, int64_t in_w, int pad_mode, int64_t* pt,
                   int64_t* pb, int64_t* pl, int64_t* pr, int64_t* out_h, int64_t* out_w) {
  const int64_t span_h = g.dil * (g.kh - 1), span_w = g.dil * (g.kw - 1);
  pads_for(pad_mode, span_h, pt, pb);
  pads_for(pad_mode, span_w, pl, pr);
  if (in_h + *pt + *pb < span_h + 1 || in_w + *pl + *pr < span_w + 1) return false;
  *out_h = (in_h + *pt + *pb - span_h - 1) / g.sh + 1;
  *out_w = (in_w + *pl + *pr - span_w - 1) / g.sw + 1;
  return true;
}

// The problem of op for this geometry and sizes; false when the kernel does not fit the
// padded input.
bool make_dw(Op op, const DwGeometry& g, int64_t batch, int64_t channels, int64_t in_h,
             int64_t in_w, int pad_mode, Layout layout, Activation act, bool bias, Problem* p) {
  int64_t pt, pb, pl, pr, out_h, out_w;
  if (!padded_output(g, in_h, in_w, pad_mode, &pt, &pb, &pl, &pr, &out_h, &out_w)) return false;
  const int64_t cm = channels * g.mult;
  const Strides xs = dense_strides(channels, in_h, in_w, layout);
  const Strides ys = dense_strides(cm, out_h, out_w, layout);
  const bool forward = op == Op::dw_forward;
  p->op = op;
  p->dw = DwShape{batch, channels, g.mult, in_h, in_w, out_h, out_w, g.kh, g.kw, g.sh, g.sw, pt, pl,
                  g.dil, g.dil, xs.n, xs.c, xs.h, xs.w, ys.n, ys.c, ys.h, ys.w,
                  forward ? act : Activation::none, layout};
  p->bias = forward && bias;
  const int64_t x_size = batch * xs.n, y_size = batch * ys.n, w_size = cm * g.kh * g.kw;
  if (op == Op::dw_forward) {
    p->a_size = x_size, p->b_size = w_size, p->c_size = cm, p->out_size = y_size;
    p->images = batch, p->image_stride = ys.n, p->units = out_h, p->unit_stride = ys.h;
  } else if (op == Op::dw_backward_input) {
    p->a_size = y_size, p->b_size = w_size, p->out_size = x_size;
    p->images = batch, p->image_stride = xs.n, p->units = in_h, p->unit_stride = xs.h;
  } else {
    p->a_size = y_size, p->b_size = x_size, p->out_size = w_size;
    p->units = cm, p->unit_stride = g.kh * g.kw;
  }
  char text[200];
  std::snprintf(text, sizeof text,
                "N=%lld C=%lld M=%lld %lldx%lld k=%lldx%lld s=%lldx%lld d=%lld pad=%lld,%lld,%lld,%lld %s%s%s%s",
                (long long)batch, (long long)channels, (long long)g.mult, (long long)in_h,
                (long long)in_w, (long long)g.kh, (long long)g.kw, (long long)g.sh, (long long)g.sw,
                (long long)g.dil, (long long)pt, (long long)pb, (long long)pl, (long long)pr,
                layout == Layout::nhwc ? "nhwc" : "nchw", forward ? " " : "",
                forward ? activation_label(act) : "", p->bias ? " bias" : "");
  p->text = text;
  return true;
}

std::vector<Problem> dw_problems(const KernelEntry& e) {
  const std::vector<DwGeometry> geometries = dw_geometries(e);
  const std::vector<Layout> layouts = layouts_of(e);
  const std::vector<int64_t> heights(std::begin(kHeights), std::end(kHeights));
  const std::vector<Activation> acts(std::begin(kActivations), std::end(kActivations));
  std::vector<Problem> out;
  Rng rng(0x5eed);
  Problem p;
  // Every channel count against every width, the rest drawn.
  for (int64_t c = 1; c <= kChannels; ++c) {
    for (int64_t w = 1; w <= kWidths; ++w) {
      // One draw per statement: argument evaluation order differs between compilers, and
      // the cases must be the same on every host.
      const DwGeometry& g = pick(geometries, rng);
      const int pad_mode = static_cast<int>((c + w) % 3);
      const int64_t h = pick(heights, rng);
      const Layout layout = pick(layouts, rng);
      const Activation act = pick(acts, rng);
      const bool bias = rng.below(4) != 0;
      if (make_dw(e.op, g, 1 + (c + w) % 2, c, h, w, pad_mode, layout, act, bias, &p)) {
        out.push_back(p);
      }
    }
  }
  // Every geometry with each padding mode and layout, sizes drawn.
  for (const DwGeometry& g : geometries) {
    for (int pad_mode = 0; pad_mode < 3; ++pad_mode) {
      for (Layout layout : layouts) {
        const int64_t c = 1 + rng.below(kChannels);
        const int64_t w = 1 + rng.below(kWidths);
        const int64_t h = pick(heights, rng) + 2;
        const Activation act = pick(acts, rng);
        const bool bias = rng.below(4) != 0;
        if (make_dw(e.op, g, 2, c, h, w, pad_mode, layout, act, bias, &p)) {
          out.push_back(p);
        }
      }
    }
  }
  // A case of geometry g, c channels, width w; padding, height, layout, activation and bias
  // drawn.
  auto add_drawn = [&](const DwGeometry& g, int64_t c, int64_t w) {
    const int pad_mode = static_cast<int>(rng.below(3));
    const int64_t h = pick(heights, rng) + 2;
    const Layout layout = pick(layouts, rng);
    const Activation act = pick(acts, rng);
    if (make_dw(e.op, g, 1, c, h, w, pad_mode, layout, act, rng.below(2) != 0, &p)) {
      out.push_back(p);
    }
  };
  // Wide rows: several groups of interior columns at stride 2 (NHWC column-group path),
  // and channel counts past the small-channel row path.
  for (const DwGeometry& g : geometries) {
    for (int64_t w : kWideWidths) {
      const int64_t c = 9 + rng.below(32);
      add_drawn(g, c, w);
    }
  }
  // Channel counts past two AVX-512 vectors, at row widths of MobileNet's 7-28: the NHWC
  // row groups' channel blocks of 2 vectors, 1 vector and a masked tail, and their groups
  // of fewer than 8 pixels.
  if (e.op == Op::dw_forward) {
    const std::vector<int64_t> net_widths{7, 14, 16, 28};
    for (const DwGeometry& g : geometries) {
      for (int64_t c : {47, 48, 73, 96}) {
        const int64_t w = pick(net_widths, rng);
        add_drawn(g, c, w);
      }
    }
  }
  return out;
}

// A dense convolution problem (the geometry's multiplier is ignored); false when the
// kernel does not fit the padded input.
bool make_conv(const DwGeometry& g, int64_t batch, int64_t cin, int64_t cout, int64_t in_h,
               int64_t in_w, int pad_mode, Layout layout, Activation act, bool bias, Problem* p) {
  int64_t pt, pb, pl, pr, out_h, out_w;
  if (!padded_output(g, in_h, in_w, pad_mode, &pt, &pb, &pl, &pr, &out_h, &out_w)) return false;
  const Strides xs = dense_strides(cin, in_h, in_w, layout), ys = dense_strides(cout, out_h, out_w, layout);
  p->op = Op::conv_forward;
  p->conv = ConvShape{batch, cin, cout, in_h, in_w, out_h, out_w, g.kh, g.kw, g.sh, g.sw, pt, pl,
                      g.dil, g.dil, xs.n, xs.c, xs.h, xs.w, ys.n, ys.c, ys.h, ys.w, act, layout};
  p->bias = bias;
  p->a_size = batch * xs.n, p->b_size = cout * cin * g.kh * g.kw, p->c_size = cout;
  p->out_size = batch * ys.n;
  p->images = batch, p->image_stride = ys.n, p->units = out_h, p->unit_stride = ys.h;
  char text[200];
  std::snprintf(text, sizeof text,
                "N=%lld Cin=%lld Cout=%lld %lldx%lld k=%lldx%lld s=%lldx%lld d=%lld pad=%lld,%lld,%lld,%lld %s %s%s",
                (long long)batch, (long long)cin, (long long)cout, (long long)in_h, (long long)in_w,
                (long long)g.kh, (long long)g.kw, (long long)g.sh, (long long)g.sw, (long long)g.dil,
                (long long)pt, (long long)pb, (long long)pl, (long long)pr,
                layout == Layout::nhwc ? "nhwc" : "nchw", activation_label(act), bias ? " bias" : "");
  p->text = text;
  return true;
}

std::vector<Problem> conv_problems(const KernelEntry& e) {
  const std::vector<DwGeometry> geometries = dw_geometries(e);
  const std::vector<Layout> layouts = layouts_of(e);
  const std::vector<int64_t> heights(std::begin(kHeights), std::end(kHeights));
  const std::vector<Activation> acts(std::begin(kActivations), std::end(kActivations));
  const std::vector<int64_t> couts = {1, 3, 8, 9, 16, 17, 24, 32, 33, 40};
  std::vector<Problem> out;
  Rng rng(0xc0);
  Problem p;
  // Every input channel count 1..8 against every width, the rest drawn.
  for (int64_t cin = 1; cin <= 8; ++cin) {
    for (int64_t w = 1; w <= kWidths; ++w) {
      const DwGeometry& g = pick(geometries, rng);
      const int pad_mode = static_cast<int>((cin + w) % 3);
      const int64_t h = pick(heights, rng);
      const int64_t cout = pick(couts, rng);
      const Layout layout = pick(layouts, rng);
      const Activation act = pick(acts, rng);
      const bool bias = rng.below(4) != 0;
      if (make_conv(g, 1 + (cin + w) % 2, cin, cout, h, w, pad_mode, layout, act, bias, &p)) {
        out.push_back(p);
      }
    }
  }
  // The first layer of the MobileNets (3 channels, 3x3, stride 2, "same" padding) on wide
  // rows: tiles of interior pixels and border ones, every output width modulo the tile
  // (66 and 97 give the 16-pixel AVX-512 tile for C_out <= 16 whole interior tiles).
  for (int64_t w : {18, 21, 26, 35, 41, 47, 50, 66, 97}) {
    for (int64_t cout : {16, 24, 32, 35}) {
      const Layout layout = pick(layouts, rng);
      const Activation act = pick(acts, rng);
      if (make_conv(DwGeometry{3, 3, 2, 2, 1, 1}, 1, 3, cout, 9, w, 1, layout, act, true, &p)) {
        out.push_back(p);
      }
    }
  }
  return out;
}

void make_pw(Op op, int64_t batch, int64_t cin, int64_t cout, int64_t h, int64_t w, Layout layout,
             Activation act, bool bias, Problem* p) {
  const Strides xs = dense_strides(cin, h, w, layout), ys = dense_strides(cout, h, w, layout);
  const bool forward = op == Op::pw_forward || op == Op::pw_gemv;
  p->op = op;
  p->pw = PwShape{batch, cin, cout, h * w, xs.n, xs.c, xs.w, ys.n, ys.c, ys.w,
                  forward ? act : Activation::none, layout};
  p->bias = forward && bias;
  if (forward) {
    p->a_size = batch * xs.n, p->b_size = cout * cin, p->c_size = cout, p->out_size = batch * ys.n;
    p->images = batch, p->image_stride = ys.n, p->units = h * w, p->unit_stride = ys.w;
    if (op == Op::pw_gemv) p->units = cout, p->unit_stride = ys.c;  // calls split channels
  } else {
    p->a_size = batch * ys.n, p->b_size = batch * xs.n, p->out_size = cout * cin;
    p->units = cout, p->unit_stride = cin;
  }
  char text[160];
  std::snprintf(text, sizeof text, "N=%lld Cin=%lld Cout=%lld %lldx%lld %s%s%s%s", (long long)batch,
                (long long)cin, (long long)cout, (long long)h, (long long)w,
                layout == Layout::nhwc ? "nhwc" : "nchw", forward ? " " : "",
                forward ? activation_label(act) : "", p->bias ? " bias" : "");
  p->text = text;
}

std::vector<Problem> pw_problems(const KernelEntry& e) {
  const std::vector<Layout> layouts = layouts_of(e);
  const std::vector<Activation> acts(std::begin(kActivations), std::end(kActivations));
  const std::vector<int64_t> couts = {1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 40, 64};
  std::vector<Problem> out;
  Rng rng(0x9e7);
  Problem p;
  // Every input channel count against every pixel count (an odd-height image when it
  // has a factor), output channels drawn. Matrix-vector kernels serve a few pixels.
  const bool gemv = e.op == Op::pw_gemv;
  for (int64_t cin = 1; cin <= kChannels; ++cin) {
    for (int64_t pixels = 1; pixels <= (gemv ? 4 : kWidths); ++pixels) {
      const int64_t h = pixels % 3 == 0 ? 3 : 1;
      const int64_t cout = pick(couts, rng);
      const Layout layout = pick(layouts, rng);
      const Activation act = pick(acts, rng);
      const bool bias = rng.below(4) != 0;
      make_pw(e.op, 1 + (cin + pixels) % 2, cin, cout, h, pixels / h, layout, act, bias, &p);
      out.push_back(p);
    }
  }
  // Larger shapes: several K blocks (K = channels forward, pixels for the weight
  // gradient; NHWC forward blocks K past 1024, the others past 256), several pixel
  // blocks, partial tiles everywhere. The last three have the pixel tiles and column panels
  // that spread the NHWC weight prefetch (Pointwise::kSpreadPrefetchK), at odd K.
  struct Big {
    int64_t batch, cin, cout, h, w;
  };
  for (const Big& b : {Big{1, 256, 8, 3, 3}, Big{1, 257, 17, 13, 10}, Big{2, 300, 20, 15, 10},
                       Big{2, 64, 70, 3, 11}, Big{1, 513, 9, 1, 17}, Big{1, 1030, 19, 2, 7}, Big{2, 8, 12, 15, 20},
                       Big{1, 33, 17, 17, 17}, Big{1, 960, 70, 1, 1}, Big{2, 1283, 37, 1, 3},
                       Big{1, 257, 72, 15, 15}, Big{1, 515, 96, 14, 14}, Big{1, 1101, 64, 12, 15}}) {
    if (gemv && b.h * b.w > 4) continue;
    for (Layout layout : layouts) {
      for (Activation act : acts) {
        make_pw(e.op, b.batch, b.cin, b.cout, b.h, b.w, layout, act, true, &p);
        out.push_back(p);
        if (e.op == Op::pw_backward_weight) break;  // activation and bias do not apply
      }
    }
  }
  // From K = 384 on NHWC forward may switch to a taller tile (AVX-512: 14 rows): every
  // pixel count up to two such tiles and a bit, so each row count of it and its edge
  // tiles runs.
  if (e.op == Op::pw_forward) {
    for (int64_t pixels = 1; pixels <= 31; ++pixels) {
      const int64_t h = pixels % 3 == 0 ? 3 : 1;
      make_pw(e.op, 1, 384 + pixels % 3, pick(couts, rng), h, pixels / h, pick(layouts, rng),
              pick(acts, rng), rng.below(4) != 0, &p);
      out.push_back(p);
    }
  }
  return out;
}

}  // namespace

const char* activation_label(Activation act) {
  int count = 0;
  return activation_names(&count)[static_cast<int>(act)];
}

std::vector<Problem> problems_for(const KernelEntry& entry) {
  const bool pw = entry.op == Op::pw_forward || entry.op == Op::pw_gemv ||
                  entry.op == Op::pw_backward_weight;
  std::vector<Problem> all = pw ? pw_problems(entry)
                             : entry.op == Op::conv_forward ? conv_problems(entry)
                                                            : dw_problems(entry);
  // Only what the entry claims (its query must match), e.g. a layout or multiplier limit.
  std::vector<Problem> out;
  for (Problem& p : all) {
    if (kernel_serves(entry, p.query(entry.dtype))) out.push_back(std::move(p));
  }
  return out;
}

}  // namespace dsconv::native

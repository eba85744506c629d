// Defines the named kernels of one SIMD ISA (see kernels.def) from the templates in this
// folder. Expanded once per ISA file, after that file's target pragma, so each ISA is
// compiled for its own instruction set while the code exists once.
#pragma once
#include "../kernel_decls.h"
#include "depthwise.h"
#include "depthwise_backward.h"
#include "conv.h"
#include "gemv.h"
#include "pointwise.h"

#define DSCONV_SIMD_KERNELS(isa, Dw, Gemm, tile, Vec, Conv, conv_tile)                        \
  int64_t pack_dw_channel_groups_f32_##isa(const DwShape& s, const float* w, float* out) {    \
    return Dw::pack_channel_groups(s, w, out);                                                \
  }                                                                                           \
  int64_t pack_gemm_##tile##_nhwc_f32_##isa(const PwShape& s, const float* w, float* out) {   \
    return Gemm::pack_nhwc(s, w, out);                                                        \
  }                                                                                           \
  int64_t pack_gemm_##tile##_nchw_f32_##isa(const PwShape& s, const float* w, float* out) {   \
    return Gemm::pack_nchw(s, w, out);                                                        \
  }                                                                                           \
  void gemm_##tile##_nhwc_f32_##isa(const PwShape& s, const float* x, const float* w,         \
                                    const float* b, float* y, int64_t n) {                    \
    Gemm::forward_nhwc(s, x, w, b, y, n);                                                     \
  }                                                                                           \
  int64_t pack_conv_##conv_tile##_nhwc_f32_##isa(const ConvShape& s, const float* w,          \
                                                 float* out) {                               \
    return Conv::pack(s, w, out);                                                             \
  }                                                                                           \
  void conv_igemm_##conv_tile##_nhwc_f32_##isa(const ConvShape& s, const float* x,           \
                                               const float* w, const float* b, float* y,      \
                                               int64_t r0, int64_t r1) {                      \
    Conv::forward(s, x, w, b, y, r0, r1);                                                     \
  }                                                                                           \
  void gemv_4xk_nhwc_f32_##isa(const PwShape& s, const float* x, const float* w,              \
                               const float* b, float* y, int64_t n, int64_t c0, int64_t c1) { \
    simd::Gemv<Vec>::forward(s, x, w, b, y, n, c0, c1);                                       \
  }                                                                                           \
  void gemm_bwd_weight_##tile##_nhwc_f32_##isa(const PwShape& s, const float* gy, const float* x, \
                                                float* gw, int64_t c0, int64_t c1) {          \
    Gemm::backward_weight_nhwc(s, gy, x, gw, c0, c1);                                         \
  }                                                                                           \
  void gemm_##tile##_nchw_f32_##isa(const PwShape& s, const float* x, const float* w,         \
                                    const float* b, float* y, int64_t n) {                    \
    Gemm::forward_nchw(s, x, w, b, y, n);                                                     \
  }                                                                                           \
  void dwconv_3x3_nhwc_f32_##isa(const DwShape& s, const float* x, const float* w,            \
                                 const float* b, float* y, int64_t r0, int64_t r1) {          \
    Dw::forward_nhwc<3, 3>(s, x, w, b, y, r0, r1);                                            \
  }                                                                                           \
  void dwconv_5x5_nhwc_f32_##isa(const DwShape& s, const float* x, const float* w,            \
                                 const float* b, float* y, int64_t r0, int64_t r1) {          \
    Dw::forward_nhwc<5, 5>(s, x, w, b, y, r0, r1);                                            \
  }                                                                                           \
  void dwconv_generic_nhwc_f32_##isa(const DwShape& s, const float* x, const float* w,        \
                                     const float* b, float* y, int64_t r0, int64_t r1) {      \
    Dw::forward_nhwc<0, 0>(s, x, w, b, y, r0, r1);                                            \
  }                                                                                           \
  void dwconv_3x3s1_nchw_f32_##isa(const DwShape& s, const float* x, const float* w,          \
                                   const float* b, float* y, int64_t r0, int64_t r1) {        \
    Dw::forward_nchw<3, 3, 1>(s, x, w, b, y, r0, r1);                                         \
  }                                                                                           \
  void dwconv_3x3s2_nchw_f32_##isa(const DwShape& s, const float* x, const float* w,          \
                                   const float* b, float* y, int64_t r0, int64_t r1) {        \
    Dw::forward_nchw<3, 3, 2>(s, x, w, b, y, r0, r1);                                         \
  }                                                                                           \
  void dwconv_5x5s1_nchw_f32_##isa(const DwShape& s, const float* x, const float* w,          \
                                   const float* b, float* y, int64_t r0, int64_t r1) {        \
    Dw::forward_nchw<5, 5, 1>(s, x, w, b, y, r0, r1);                                         \
  }                                                                                           \
  void dwconv_5x5s2_nchw_f32_##isa(const DwShape& s, const float* x, const float* w,          \
                                   const float* b, float* y, int64_t r0, int64_t r1) {        \
    Dw::forward_nchw<5, 5, 2>(s, x, w, b, y, r0, r1);                                         \
  }                                                                                           \
  void dwconv_generic_nchw_f32_##isa(const DwShape& s, const float* x, const float* w,        \
                                     const float* b, float* y, int64_t r0, int64_t r1) {      \
    Dw::forward_nchw<0, 0, 0>(s, x, w, b, y, r0, r1);                                         \
  }

// The depthwise backward kernels of one ISA (DwB = DepthwiseBackward<V>).
#define DSCONV_SIMD_BACKWARD_KERNELS(isa, DwB)                                                 \
  int64_t pack_dw_bwd_input_nhwc_f32_##isa(const DwShape& s, const float* w, float* out) {    \
    return DwB::pack_channels_inner(s, w, out);                                               \
  }                                                                                           \
  void dwconv_bwd_input_generic_nhwc_f32_##isa(const DwShape& s, const float* gy,             \
                                               const float* w, float* gx, int64_t r0,         \
                                               int64_t r1) {                                  \
    DwB::backward_input_nhwc(s, gy, w, gx, r0, r1);                                           \
  }                                                                                           \
  void dwconv_bwd_input_generic_nchw_f32_##isa(const DwShape& s, const float* gy,             \
                                               const float* w, float* gx, int64_t r0,         \
                                               int64_t r1) {                                  \
    DwB::backward_input_nchw(s, gy, w, gx, r0, r1);                                           \
  }                                                                                           \
  void dwconv_bwd_weight_3x3_nhwc_f32_##isa(const DwShape& s, const float* gy,                \
                                            const float* x, float* gw, int64_t c0,            \
                                            int64_t c1) {                                     \
    DwB::template backward_weight_nhwc<3, 3>(s, gy, x, gw, c0, c1);                           \
  }                                                                                           \
  void dwconv_bwd_weight_generic_nhwc_f32_##isa(const DwShape& s, const float* gy,            \
                                                const float* x, float* gw, int64_t c0,        \
                                                int64_t c1) {                                 \
    DwB::template backward_weight_nhwc<0, 0>(s, gy, x, gw, c0, c1);                           \
  }                                                                                           \
  void dwconv_bwd_weight_3x3_nchw_f32_##isa(const DwShape& s, const float* gy,                \
                                            const float* x, float* gw, int64_t c0,            \
                                            int64_t c1) {                                     \
    DwB::template backward_weight_nchw<3, 3>(s, gy, x, gw, c0, c1);                           \
  }                                                                                           \
  void dwconv_bwd_weight_generic_nchw_f32_##isa(const DwShape& s, const float* gy,            \
                                                const float* x, float* gw, int64_t c0,        \
                                                int64_t c1) {                                 \
    DwB::template backward_weight_nchw<0, 0>(s, gy, x, gw, c0, c1);                           \
  }

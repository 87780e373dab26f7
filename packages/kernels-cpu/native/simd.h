// SIMD traits, one per instruction set. Exactly one of DITFA_SIMD_AVX512 / DITFA_SIMD_AVX2 /
// DITFA_SIMD_SCALAR is defined by the kernel file that includes this header, and everything here sits
// in that file's own namespace (DITFA_ISA_NS) inside an anonymous namespace, so no inline function
// compiled with one file's -m flags can be picked by the linker for another file.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(DITFA_SIMD_AVX512) || defined(DITFA_SIMD_AVX2)
#include <immintrin.h>
#endif

namespace ditfa {
namespace DITFA_ISA_NS {
namespace {

// exp2 polynomial on [-0.5, 0.5]: Taylor coefficients of 2^f = e^(f·ln2), degree 7 (relative error
// below 2e-9 before rounding, i.e. within one fp32 ulp).
constexpr float kC1 = 0.693147180559945f;
constexpr float kC2 = 0.240226506959101f;
constexpr float kC3 = 0.0555041086648216f;
constexpr float kC4 = 0.00961812910762848f;
constexpr float kC5 = 0.00133335581464284f;
constexpr float kC6 = 0.000154035303933816f;
constexpr float kC7 = 1.52527338040598e-05f;

#if defined(DITFA_SIMD_AVX512)

struct Simd {
  static constexpr int W = 16;
  // 32 query rows per tile: 64-row tiles (4 × 6 blocks) were no faster for full attention at the bench
  // sizes in interleaved A/B runs and widen the masked edges of window tiles.
  static constexpr int NRV = 2;  // row vectors per query tile
  static constexpr int NJ = 12;  // keys per register block in q·kᵀ (NJ × NRV accumulators)
  static constexpr int ND = 12;  // head channels per register block in p·v
  using F = __m512;
  using M = __mmask16;
  static inline F zero() { return _mm512_setzero_ps(); }
  static inline F set1(float x) { return _mm512_set1_ps(x); }
  static inline F load(const float* p) { return _mm512_load_ps(p); }
  static inline void store(float* p, F x) { _mm512_store_ps(p, x); }
  static inline F fma(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static inline F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  static inline F add(F a, F b) { return _mm512_add_ps(a, b); }
  static inline F sub(F a, F b) { return _mm512_sub_ps(a, b); }
  static inline F max(F a, F b) { return _mm512_max_ps(a, b); }
  static inline M le(F a, F b) { return _mm512_cmp_ps_mask(a, b, _CMP_LE_OQ); }
  static inline M eq(F a, F b) { return _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ); }
  static inline M mand(M a, M b) { return static_cast<M>(a & b); }
  static inline bool any(M m) { return m != 0; }
  static inline F select(M m, F a, F b) { return _mm512_mask_blend_ps(m, b, a); }
  static inline F exp2(F x) {
    // Below -126 the result is exactly 0 (no denormals); above 127 it saturates.
    const M normal = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-126.f), _CMP_GE_OQ);
    x = _mm512_max_ps(x, _mm512_set1_ps(-126.f));
    x = _mm512_min_ps(x, _mm512_set1_ps(127.f));
    const F n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const F f = _mm512_sub_ps(x, n);
    F p = _mm512_set1_ps(kC7);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kC6));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kC5));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kC4));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kC3));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kC2));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kC1));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.f));
    return _mm512_maskz_scalef_ps(normal, p, n);
  }
  // 2^x with a degree-3 minimax polynomial (relative error below 7.5e-5): for probabilities that are
  // rounded to bf16 (relative step 3.9e-3) next, where the full polynomial's accuracy is lost anyway.
  static inline F exp2_bf16(F x) {
    const M normal = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-126.f), _CMP_GE_OQ);
    x = _mm512_max_ps(x, _mm512_set1_ps(-126.f));
    x = _mm512_min_ps(x, _mm512_set1_ps(127.f));
    const F n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const F f = _mm512_sub_ps(x, n);
    F p = _mm512_set1_ps(0.055171541146962814f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.24261118118460862f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.6932610150374618f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.9999280706889883f));
    return _mm512_maskz_scalef_ps(normal, p, n);
  }
};

#elif defined(DITFA_SIMD_AVX2)

struct Simd {
  static constexpr int W = 8;
  static constexpr int NRV = 2;
  static constexpr int NJ = 4;
  static constexpr int ND = 6;
  using F = __m256;
  using M = __m256;
  static inline F zero() { return _mm256_setzero_ps(); }
  static inline F set1(float x) { return _mm256_set1_ps(x); }
  static inline F load(const float* p) { return _mm256_load_ps(p); }
  static inline void store(float* p, F x) { _mm256_store_ps(p, x); }
  static inline F fma(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static inline F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  static inline F add(F a, F b) { return _mm256_add_ps(a, b); }
  static inline F sub(F a, F b) { return _mm256_sub_ps(a, b); }
  static inline F max(F a, F b) { return _mm256_max_ps(a, b); }
  static inline M le(F a, F b) { return _mm256_cmp_ps(a, b, _CMP_LE_OQ); }
  static inline M eq(F a, F b) { return _mm256_cmp_ps(a, b, _CMP_EQ_OQ); }
  static inline M mand(M a, M b) { return _mm256_and_ps(a, b); }
  static inline bool any(M m) { return _mm256_movemask_ps(m) != 0; }
  static inline F select(M m, F a, F b) { return _mm256_blendv_ps(b, a, m); }
  static inline F exp2(F x) {
    // Below -126 the result is set to exactly 0 (no denormals); above 127 it saturates.
    const M tiny = _mm256_cmp_ps(x, _mm256_set1_ps(-126.f), _CMP_LT_OQ);
    x = _mm256_max_ps(x, _mm256_set1_ps(-126.f));
    x = _mm256_min_ps(x, _mm256_set1_ps(127.f));
    const F n = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const F f = _mm256_sub_ps(x, n);
    F p = _mm256_set1_ps(kC7);
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kC6));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kC5));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kC4));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kC3));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kC2));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kC1));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.f));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(tiny, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
  }
};

#else  // scalar

struct Simd {
  static constexpr int W = 1;
  static constexpr int NRV = 8;
  static constexpr int NJ = 4;
  static constexpr int ND = 4;
  using F = float;
  using M = bool;
  static inline F zero() { return 0.f; }
  static inline F set1(float x) { return x; }
  static inline F load(const float* p) { return *p; }
  static inline void store(float* p, F x) { *p = x; }
  static inline F fma(F a, F b, F c) { return a * b + c; }
  static inline F mul(F a, F b) { return a * b; }
  static inline F add(F a, F b) { return a + b; }
  static inline F sub(F a, F b) { return a - b; }
  static inline F max(F a, F b) { return a > b ? a : b; }
  static inline M le(F a, F b) { return a <= b; }
  static inline M eq(F a, F b) { return a == b; }
  static inline M mand(M a, M b) { return a && b; }
  static inline bool any(M m) { return m; }
  static inline F select(M m, F a, F b) { return m ? a : b; }
  static inline F exp2(F x) { return x < -126.f ? 0.f : std::exp2(x > 127.f ? 127.f : x); }
};

#endif

}  // namespace
}  // namespace DITFA_ISA_NS
}  // namespace ditfa

// Host-side check of the window helpers the kernels use to pick and mask key tiles (kernel_common.cuh),
// exhaustive over small shapes: no allowed (query, key) pair lies outside window_key_range, every pair of
// a tile that tile_inside_window calls full is allowed, and window_allows matches the definition in
// core's reference (1-D: |i - j| <= w; 2-D: |dr| <= r && |dc| <= r on a rows × cols grid). Runs on a
// machine without a GPU: test/window-helpers.test.ts compiles it with nvcc and runs it.
#include <cstdio>
#include <cstdlib>

#include "kernel_common.cuh"

using ditfa::Win;

static int failures = 0;

static void check(bool ok, const char* what, int a, int b, int c, int d) {
  if (!ok && failures++ < 20) std::printf("FAIL %s (%d, %d, %d, %d)\n", what, a, b, c, d);
}

static bool truth(const Win& w, int rows, int i, int j) {
  (void)rows;
  if (w.kind == 1) return std::abs(i - j) <= w.size;
  const int ri = i / w.cols, rj = j / w.cols, ci = i % w.cols, cj = j % w.cols;
  return std::abs(ri - rj) <= w.radius && std::abs(ci - cj) <= w.radius;
}

static void check_window(const Win& w, int L, int rows, int BM, int BN) {
  for (int m0 = 0; m0 < L; m0 += BM) {
    const int mlast = (m0 + BM < L ? m0 + BM : L) - 1;
    int lo = 0, hi = 0;
    ditfa::window_key_range(w, m0, mlast, L, lo, hi);
    check(lo <= m0 && hi > mlast && lo >= 0 && hi <= L, "range holds the diagonal", m0, lo, hi, L);
    for (int i = m0; i <= mlast; ++i) {
      for (int j = 0; j < L; ++j) {
        const bool t = truth(w, rows, i, j);
        check(ditfa::window_allows(w, i, j) == t, "window_allows", i, j, w.size, w.radius);
        if (t) check(j >= lo && j < hi, "allowed key inside the range", i, j, lo, hi);
      }
    }
    for (int n0 = 0; n0 < L; n0 += BN) {
      const int n1 = n0 + BN - 1;
      if (!ditfa::tile_inside_window(w, m0, mlast, n0, n1)) continue;
      for (int i = m0; i <= mlast; ++i)
        for (int j = n0; j <= n1 && j < L; ++j) check(truth(w, rows, i, j), "tile called full holds a masked pair", i, j, n0, m0);
    }
  }
}

int main() {
  int cases = 0;
  for (int L : {1, 2, 17, 64, 65, 67, 130, 200}) {
    for (int size : {0, 1, 5, 31, 63, 64, 100, 199, 400}) {
      for (int BM : {8, 64}) {
        Win w{1, size < L ? size : L, 1, 0};
        check_window(w, L, 0, BM, BM == 8 ? 32 : 64);
        ++cases;
      }
    }
  }
  for (int rows : {1, 3, 8, 12}) {
    for (int cols : {1, 5, 9, 10}) {
      for (int radius : {0, 1, 2, 7}) {
        Win w{2, 0, cols, radius};
        check_window(w, rows * cols, rows, 64, 64);
        check_window(w, rows * cols, rows, 8, 32);
        ++cases;
      }
    }
  }
  std::printf("%d window cases, %d failures\n", cases, failures);
  return failures == 0 ? 0 : 1;
}

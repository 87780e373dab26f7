# The addon and its kernel files. Each instruction set is its own static library with its own -m flags,
# so only those files use AVX2 / AVX-512 instructions and the addon picks a path with cpuid at run time
# (never -march=native). `ditfa_sanitize=1` builds with ASan + UBSan (scripts/sanitize.sh). The dense
# (linear-layer) sets follow the same rule; `ditfa_amx=0` (set by scripts/build-native.mjs when the
# compiler lacks -mamx-tile / -mamx-bf16) builds the AMX set as a stub that reports itself missing.
{
  "variables": {
    "ditfa_sanitize%": "0",
    "ditfa_amx%": "1",
    "ditfa_common_cflags": ["-O3", "-fno-math-errno", "-fPIC", "-Wall", "-Wextra", "-Wno-unused-parameter"],
    "ditfa_sanitize_flags": ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
  },
  "target_defaults": {
    "cflags_cc!": ["-fno-exceptions"],
    "cflags_cc": ["-std=c++17", "-fexceptions", "<@(ditfa_common_cflags)"],
    "conditions": [
      ["ditfa_sanitize==1", {
        "cflags_cc": ["<@(ditfa_sanitize_flags)"],
        "ldflags": ["-fsanitize=address,undefined"]
      }]
    ]
  },
  "targets": [
    {
      "target_name": "ditfa_kernels_cpu",
      "sources": ["native/addon.cc", "native/kernels_scalar.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags_cc": ["-pthread"],
      "ldflags": ["-pthread"],
      "conditions": [
        ["target_arch=='x64'", {
          "dependencies": ["ditfa_kernels_avx2", "ditfa_kernels_avx512", "ditfa_kernels_avx512bf16", "ditfa_kernels_amx", "ditfa_dense_avx512", "ditfa_dense_avx512bf16", "ditfa_dense_amx"]
        }, {
          "sources": ["native/kernels_none.cc"]
        }]
      ]
    }
  ],
  "conditions": [
    ["target_arch=='x64'", {
      "targets": [
        {
          "target_name": "ditfa_kernels_avx2",
          "type": "static_library",
          "sources": ["native/kernels_avx2.cc"],
          "cflags_cc": ["-mavx2", "-mfma"]
        },
        {
          "target_name": "ditfa_kernels_avx512",
          "type": "static_library",
          "sources": ["native/kernels_avx512.cc"],
          "cflags_cc": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-Wno-maybe-uninitialized", "-Wno-uninitialized"]
        },
        {
          "target_name": "ditfa_kernels_avx512bf16",
          "type": "static_library",
          "sources": ["native/kernels_avx512bf16.cc"],
          "cflags_cc": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512bf16", "-mfma", "-Wno-maybe-uninitialized", "-Wno-uninitialized"]
        },
        {
          "target_name": "ditfa_kernels_amx",
          "type": "static_library",
          "conditions": [
            ["ditfa_amx==1", {
              "sources": ["native/kernels_amx.cc"],
              "cflags_cc": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512bf16", "-mfma", "-mamx-tile", "-mamx-bf16", "-Wno-maybe-uninitialized", "-Wno-uninitialized"]
            }, {
              "sources": ["native/kernels_amx_none.cc"]
            }]
          ]
        },
        {
          "target_name": "ditfa_dense_avx512",
          "type": "static_library",
          "sources": ["native/dense_avx512.cc"],
          "cflags_cc": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-Wno-maybe-uninitialized", "-Wno-uninitialized"]
        },
        {
          "target_name": "ditfa_dense_avx512bf16",
          "type": "static_library",
          "sources": ["native/dense_avx512bf16.cc"],
          "cflags_cc": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512bf16", "-mfma", "-Wno-maybe-uninitialized", "-Wno-uninitialized"]
        },
        {
          "target_name": "ditfa_dense_amx",
          "type": "static_library",
          "conditions": [
            ["ditfa_amx==1", {
              "sources": ["native/dense_amx.cc"],
              "cflags_cc": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512bf16", "-mfma", "-mamx-tile", "-mamx-bf16", "-Wno-maybe-uninitialized", "-Wno-uninitialized"]
            }, {
              "sources": ["native/dense_amx_none.cc"]
            }]
          ]
        }
      ]
    }]
  ]
}

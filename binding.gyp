{
  "targets": [
    {
      "target_name": "blockmirror",
      "sources": [
        "native/addon.cc",
        "native/buffer_pool.cc",
        "native/nbd_connection.cc",
        "native/store.cc",
        "native/nbd_device.cc",
        "native/resync_channel.cc",
        "native/resync_sender.cc",
        "native/resync_runs.cc",
        "native/crc32c.cc",
        "native/errors.cc",
        "native/js_args.cc",
        "native/js_wakeup.cc",
        "native/logger.cc",
        "native/thread_signals.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "_GNU_SOURCE", "_FILE_OFFSET_BITS=64"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags": ["-Wall", "-Wextra", "-fvisibility=hidden", "-O2"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Werror", "-fvisibility=hidden", "-O2", "-msse4.2", "-pthread"],
      "ldflags": ["-pthread"]
    }
  ]
}

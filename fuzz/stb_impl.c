/*
 * stb_impl.c - the stb_image and stb_image_resize implementations, compiled from the system
 * headers (/usr/include/stb, the same source Debian builds libstb.so from) into the image
 * fuzzer, so that the decoders run with coverage instrumentation and ASan/UBSan checks.
 * These definitions take precedence over libstb.so's at link time. Only for build/fuzz.
 */
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#include <stb/stb_image.h>
#include <stb/stb_image_resize.h>

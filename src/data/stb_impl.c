/*
 * stb_impl.c - the stb_image, stb_image_resize and stb_image_write implementations, compiled
 * into libcnn from Debian's headers (/usr/include/stb, libstb-dev: the same source Debian
 * builds libstb.so from), instead of linking libstb.so.
 *
 * Why our own build: with -fwrapv (Makefile), signed integer overflow in stb is defined
 * wrap-around. Debian's stb_image 2.27 multiplies a JPEG's accumulated DC value by its
 * quantiser in an int (stbi__jpeg_decode_block; upstream checks it since 2.28), so a corrupt
 * file made that undefined behaviour (found by fuzz_image: fuzz/regressions/
 * image-jpeg-dc-overflow); now it yields a wrong pixel of a broken image and nothing else. The
 * other stb bugs we know of are refused before stb runs (src/data/image.c check_png, check_jpeg,
 * check_pnm), or fixed in the copy of stb_image.h this file is compiled from: upstream's 2.28
 * fixes for a JPEG that runs out of bits, applied by the Makefile (src/data/stb_image.sed; the
 * include path puts BUILD/stbfix first). Also, the sanitizer builds (make asan, make fuzz) now
 * check stb's code too.
 * Warnings are off for this file only (-w): it is not ours to change.
 */
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image.h>
#include <stb/stb_image_resize.h>
#include <stb/stb_image_write.h>

/*
 * stb_impl.c - the stb_image, stb_image_resize and stb_image_write implementations, compiled
 * into libcnn from Debian's headers (/usr/include/stb, libstb-dev: the same source Debian
 * builds libstb.so from), instead of linking libstb.so.
 *
 * stb_image decodes only the rarer formats people send: BMP, GIF, TGA and PNM (image.c). Its
 * PNG and JPEG decoders are compiled out (STBI_NO_PNG, STBI_NO_JPEG): PNG and JPEG, what people
 * actually send, go to libpng and libjpeg-turbo (decode.c says why), so neither can reach stb's
 * parsers, where the fuzzer kept finding bugs in Debian's 2.27 (fuzz/README.md). PSD, HDR and
 * PIC are compiled out too: nobody photographs a digit into them, and the server takes images
 * from strangers. stb_image_write (PNG writing, cnn_image_write_png, and the tests' and tools'
 * encoders) and stb_image_resize are separate and unaffected.
 *
 * Why our own build: with -fwrapv (Makefile), signed integer overflow in stb is defined
 * wrap-around rather than undefined behaviour, and the sanitizer builds (make asan, make fuzz)
 * check stb's code too. The PNM bug we know of is refused before stb runs (image.c check_pnm).
 * Until PNG and JPEG left stb, the Makefile also patched in upstream's 2.28 fixes for a JPEG
 * that runs out of bits; that code is no longer compiled.
 * Warnings are off for this file only (-w): it is not ours to change.
 */
#define STBI_NO_PNG
#define STBI_NO_JPEG
#define STBI_NO_PSD
#define STBI_NO_HDR
#define STBI_NO_PIC
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image.h>
#include <stb/stb_image_resize.h>
#include <stb/stb_image_write.h>

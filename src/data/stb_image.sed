# Backports to Debian's stb_image 2.27 of upstream fixes released in 2.28: when a corrupt or
# truncated JPEG runs out of entropy-coded bits, 2.27 keeps consuming them and its bit counter
# goes negative, so the next refill shifts by 32 or more (undefined behaviour; found by
# fuzz_image, fuzz/regressions/image-jpeg-bits-run-out). 2.28 stops there instead. Applied by
# the Makefile to a copy of the header that only src/stb_impl.c includes; the build fails if a
# line no longer matches.
/^   if (j->code_bits < n) stbi__grow_buffer_unsafe(j);$/a\
   if (j->code_bits < n) return 0; /* cnn: stb 2.28 fix */
/^   if (j->code_bits < 1) stbi__grow_buffer_unsafe(j);$/a\
   if (j->code_bits < 1) return 0; /* cnn: stb 2.28 fix */
/s = r & 15; \/\/ combined length$/a\
         if (s > j->code_bits) return stbi__err("bad huffman code", "Combined length longer than code bits available"); /* cnn: stb 2.28 fix */

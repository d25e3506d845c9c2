// The AVX-512 attention unit on SIMDe (see isa_avx512_emulated.cpp): only its int8 attention is used,
// so that the vpdpbusd code of the VNNI path runs in the tests of CPUs without AVX-512.
#define PRUNEOFA_AVX512_EMULATED 1
#include "attn_avx512.cpp"

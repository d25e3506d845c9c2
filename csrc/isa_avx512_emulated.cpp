// The AVX-512 VNNI path built on SIMDe (portable implementations of the same intrinsics, from the
// simde-py build requirement): slow, never picked automatically, there so that the exact kernel code
// of the VNNI path is compiled and tested on CPUs without AVX-512 (force_isa="vnni-emulated").
#define PRUNEOFA_AVX512_EMULATED 1
#include "isa_avx512.cpp"

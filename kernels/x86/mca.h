/*
 * kernels/x86/mca.h — marks for the static model of the kernels' inner loops
 * (tools/dsv4-mca.py, docs/bench.md "The static model").
 *
 * Built normally every mark is nothing. Compiled to assembly with
 * -DDSV4K_MCA=1 (the tool does that, with the library's own flags from the
 * build's compile_commands.json), DSV4K_MCA_BEGIN/END become the comments
 * llvm-mca reads as the bounds of a code region, named "format_kernel:W"
 * where W is the number of weights one pass through the region consumes;
 * the tool turns llvm-mca's cycles per pass into cycles per 64 weights.
 * DSV4K_MCA_COMMON(c) is c, and 1 in that build: it wraps a condition that
 * holds in the common case inside a loop (plain power-of-two scale bytes,
 * blocks of two digit planes), so the region the model reads is the
 * straight common path (DSV4K_MCA_RARE(c), 0 in that build, wraps one that
 * holds in the rare case) — llvm-mca reads a region as straight-line code,
 * both arms of a branch included. The assembly of that build is for the
 * model only and is never linked.
 *
 * A mark is a volatile asm statement: GCC does not schedule instructions
 * across it, so the marks stand at the edges of a loop body. The compiler
 * may lay the body out in pieces (a rotated loop puts the end before the
 * beginning): the tool follows the jumps from BEGIN to END and gives
 * llvm-mca that path as straight code, conditional branches taken as not
 * taken (the loop's own increment and branch may fall outside it).
 */
#ifndef DSV4K_X86_MCA_H
#define DSV4K_X86_MCA_H

#ifdef DSV4K_MCA
#define DSV4K_MCA_BEGIN(name) __asm__ volatile("# LLVM-MCA-BEGIN " name)
#define DSV4K_MCA_END(name) __asm__ volatile("# LLVM-MCA-END " name)
#define DSV4K_MCA_COMMON(c) ((void)(c), 1)
#define DSV4K_MCA_RARE(c) ((void)(c), 0)
#else
#define DSV4K_MCA_BEGIN(name) ((void)0)
#define DSV4K_MCA_END(name) ((void)0)
#define DSV4K_MCA_COMMON(c) (c)
#define DSV4K_MCA_RARE(c) (c)
#endif

#endif

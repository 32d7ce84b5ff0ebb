// token_embedding: y[b, l, d] = tok[ids[b, l], d] + pos[l, d]; ids (B, L) long, tok (V, D), pos (P >= L, D),
// y (B, L, D), all packed: y[(b*L + l)*D + d]. The host checks 0 <= ids < V before the launch.
// naive: one work-item per output element over the flat index, NDRange rounded up by the host.
#ifdef REAL_IS_DOUBLE
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#endif
#ifndef REAL
#define REAL float
#endif

__kernel void token_embedding_naive(__global const long *ids, __global const REAL *tok, __global const REAL *pos,
                                    __global REAL *y, const long total, const int L, const int D)
{
    const long i = get_global_id(0);
    if (i >= total) return;
    const int d = i % D;
    const long bl = i / D;         // b*L + l
    const int l = bl % L;
    y[i] = tok[ids[bl] * D + d] + pos[(long)l * D + d];
}

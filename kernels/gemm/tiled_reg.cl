// gemm/tiled_reg.cl, gemm_tiled_reg: GPU-style register blocking, the GEMM of gemm/gemm.h (layout, arguments,
// flags). A work-group of NDIMC x MDIMC work-items computes an MWG x NWG tile of C; each work-item holds MWI x NWI
// accumulators (MWI = MWG/MDIMC, NWI = NWG/NDIMC, e.g. 8 x 8) in registers. Per step of KWG along k, the work-group
// stages the MWG x KWG tile of A and the KWG x NWG tile of B in local memory, both k-major:
//     Al[kk*MWG + i] = A[m0 + i, k0 + kk],   Bl[kk*NWG + j] = B[k0 + kk, n0 + j]
// (A, and B with GEMM_TRANS_B, are read from global memory along k and written transposed; B otherwise is copied
// as is). A work-item's rows are runs of VWM consecutive rows, the runs MDIMC*VWM apart, and its columns likewise:
//     m = m0 + (i / VWM) * (MDIMC*VWM) + ty*VWM + i % VWM,   n = n0 + (j / VWN) * (NDIMC*VWN) + tx*VWN + j % VWN
// so each run is one vector read from local memory, neighbouring work-items read neighbouring vectors, and the
// C stores of neighbouring work-items are contiguous.
// Tails: bounds checks, no host-side padding. A tile wholly inside A (or B) is staged with REAL4 global loads when
// GEMM_VEC_OK; a tile crossing an edge is staged element by element with 0 outside; C elements outside (M, N) are
// not stored. NDRange (ceil(N/NWG)*NDIMC, ceil(M/MWG)*MDIMC, Z), work-group (NDIMC, MDIMC, 1).
// float16 (-DDATA_HALF, gemm/gemm.h): A and B read as half and staged as REAL like the half-storage operands (no
// prefetch, k runs), the bias, residual and C of DATA (LOAD / STORE, the REAL4 store as vstorea_half4_rte), the
// local tiles and the accumulation in REAL (float).
// Knobs (-D):
//   MWG    rows of C per work-group (e.g. 64, 128), a multiple of MDIMC * VWM
//   NWG    columns of C per work-group (e.g. 64, 128, 256), a multiple of NDIMC * VWN
//   KWG    depth of the staged tiles along k, a multiple of 4 (e.g. 16, 32)
//   MDIMC  work-items along M per work-group (local size in dimension 1)
//   NDIMC  work-items along N per work-group (local size in dimension 0)
//   VWM    a work-item's rows come in runs of VWM (1, 2 or 4): one local-memory vector read per run
//   VWN    a work-item's columns come in runs of VWN (1, 2 or 4): one local read, one C store per run
//   (MDIMC * NDIMC work-items, the local tiles (MWG + NWG) * KWG REALs and the MWI x NWI accumulators must fit the
//   device: registry/linalg.py _tiled_reg_fits)
#include "common.h"
#ifndef MWG
#error "MWG (rows of C per work-group) must be set with -D"
#endif
#ifndef NWG
#error "NWG (columns of C per work-group) must be set with -D"
#endif
#ifndef KWG
#error "KWG (depth of the staged tiles along k, a multiple of 4) must be set with -D"
#endif
#ifndef MDIMC
#error "MDIMC (work-items along M per work-group) must be set with -D"
#endif
#ifndef NDIMC
#error "NDIMC (work-items along N per work-group) must be set with -D"
#endif
#ifndef VWM
#error "VWM (run length of a work-item's rows: 1, 2 or 4) must be set with -D"
#endif
#ifndef VWN
#error "VWN (run length of a work-item's columns: 1, 2 or 4) must be set with -D"
#endif
#include "gemm.h"

#define MWI (MWG / MDIMC)   // rows of C per work-item
#define NWI (NWG / NDIMC)   // columns of C per work-item
#define WGS (MDIMC * NDIMC) // work-items per work-group
#if defined(A_HALF) || defined(B_HALF) || defined(DATA_HALF)
#define PREFETCH 0          // half storage (or float16): tiles staged as they come, in k runs (DEFINE_STAGE_KMAJOR)
#define K_RUNS 1
#else
#define PREFETCH 1          // register prefetch of the next whole tile (gemm_tiled_reg below)
#define K_RUNS 0
#endif
#define PF_A ((MWG * (KWG / 4) + WGS - 1) / WGS)   // REAL4 registers per work-item for a prefetched A tile
#define PF_B ((NWG * (KWG / 4) + WGS - 1) / WGS)   // and for B

#if VWM == 1
#define REALVM REAL
#define UNPACK_M(dst, v) dst[0] = (v)
#elif VWM == 2
#define REALVM CAT(REAL, 2)
#define UNPACK_M(dst, v) dst[0] = (v).s0; dst[1] = (v).s1
#else
#define REALVM REAL4
#define UNPACK_M(dst, v) dst[0] = (v).s0; dst[1] = (v).s1; dst[2] = (v).s2; dst[3] = (v).s3
#endif
#if VWN == 1
#define REALVN REAL
#define UNPACK_N(dst, v) dst[0] = (v)
#elif VWN == 2
#define REALVN CAT(REAL, 2)
#define UNPACK_N(dst, v) dst[0] = (v).s0; dst[1] = (v).s1
#else
#define REALVN REAL4
#define UNPACK_N(dst, v) dst[0] = (v).s0; dst[1] = (v).s1; dst[2] = (v).s2; dst[3] = (v).s3
#endif

// Stage the ROWS x KWG tile at src (row-major, k contiguous, leading dimension ld) into dst transposed:
// dst[kk*ROWS + r] = src[r*ld + kk], 0 where r >= rows_left or kk >= k_left. Defined once per operand (its element
// type T and reads LD, LD4A: REAL or half storage). A whole tile goes in 4-element reads along k. With prefetch
// (K_RUNS 0), element e of the work-group's loop is row e % ROWS, k offset (e / ROWS) * 4: neighbouring work-items
// store to neighbouring local addresses (with rows e / (KWG/4), a warp's transposing stores fell in one bank, KWG/4
// ways). The half-storage kernels (K_RUNS 1, no prefetch) take row e / (KWG/4), k offset (e % (KWG/4)) * 4:
// neighbouring work-items read one row's contiguous runs, which the other order scatters over 32 rows, and without
// the prefetch nothing hides that (half-storage UNet step on the H200: 148 ms this way, as before the prefetch
// came (137 .. 152 ms over three runs), 179 ms the other).
// The row and the k offset of a whole tile's element e (a 4-element read along k), in the order above.
#define KMAJOR_ROW(e, ROWS) (K_RUNS ? (e) / (KWG / 4) : (e) % (ROWS))
#define KMAJOR_K(e, ROWS) ((K_RUNS ? (e) % (KWG / 4) : (e) / (ROWS)) * 4)

// dst[(kk + i)*ROWS + r] = v.si: four consecutive k of row r, stored k-major.
inline void store_kmajor4(__local REAL *dst, const int ROWS, const int r, const int kk, const REAL4 v)
{
    dst[(kk + 0) * ROWS + r] = v.s0;
    dst[(kk + 1) * ROWS + r] = v.s1;
    dst[(kk + 2) * ROWS + r] = v.s2;
    dst[(kk + 3) * ROWS + r] = v.s3;
}

#define DEFINE_STAGE_KMAJOR(NAME, T, LD, LD4A)                                                                 \
inline void NAME(__local REAL *dst, const __global T *src, const int ld, const int ROWS, const int rows_left,  \
                 const int k_left, const bool vec, const int tid)                                              \
{                                                                                                               \
    if (vec && rows_left >= ROWS && k_left >= KWG) {                                                            \
        for (int e = tid; e < ROWS * (KWG / 4); e += WGS) {                                                     \
            const int r = KMAJOR_ROW(e, ROWS), kk = KMAJOR_K(e, ROWS);                                          \
            store_kmajor4(dst, ROWS, r, kk, LD4A(src, (long)r * ld + kk));                                      \
        }                                                                                                       \
    } else {                                                                                                    \
        for (int e = tid; e < ROWS * KWG; e += WGS) {                                                           \
            const int r = e / KWG, kk = e % KWG;                                                                \
            dst[kk * ROWS + r] = (r < rows_left && kk < k_left) ? LD(src, (long)r * ld + kk) : 0;               \
        }                                                                                                       \
    }                                                                                                           \
}
DEFINE_STAGE_KMAJOR(stage_a_kmajor, A_T, LD_A, LD4A_A)
DEFINE_STAGE_KMAJOR(stage_b_kmajor, B_T, LD_B, LD4A_B)

// Stage the KWG x COLS tile of B at src (row-major, n contiguous) into dst as is: dst[kk*COLS + j] = src[kk*ld + j],
// 0 where kk >= k_left or j >= cols_left.
inline void stage_b_nmajor(__local REAL *dst, const __global B_T *src, const int ld, const int COLS,
                           const int cols_left, const int k_left, const bool vec, const int tid)
{
    if (vec && cols_left >= COLS && k_left >= KWG) {
        for (int e = tid; e < KWG * (COLS / 4); e += WGS) {
            const int kk = e / (COLS / 4), j = (e % (COLS / 4)) * 4;
            *(__local REAL4 *)(dst + kk * COLS + j) = LD4A_B(src, (long)kk * ld + j);
        }
    } else {
        for (int e = tid; e < KWG * COLS; e += WGS) {
            const int kk = e / COLS, j = e % COLS;
            dst[kk * COLS + j] = (kk < k_left && j < cols_left) ? LD_B(src, (long)kk * ld + j) : 0;
        }
    }
}

__kernel __attribute__((reqd_work_group_size(NDIMC, MDIMC, 1)))
void gemm_tiled_reg(GEMM_ARGS)
{
    const int tx = get_local_id(0), ty = get_local_id(1), tid = ty * NDIMC + tx;
    const int n0 = get_group_id(0) * NWG, m0 = get_group_id(1) * MWG;
    GEMM_BATCH(get_global_id(2));
    const bool vec = flags & GEMM_VEC_OK;
    // Declared as REAL4 so that the REAL4, REALVM and REALVN accesses below are aligned.
    __local REAL4 Al4[KWG * MWG / 4];
    __local REAL4 Bl4[KWG * NWG / 4];
    __local REAL *Al = (__local REAL *)Al4;
    __local REAL *Bl = (__local REAL *)Bl4;

    REAL acc[MWI][NWI];
#pragma unroll
    for (int i = 0; i < MWI; ++i)
#pragma unroll
        for (int j = 0; j < NWI; ++j)
            acc[i][j] = 0;

    const bool trans_b = flags & GEMM_TRANS_B;
    // Tiles wholly inside A and B (and rows REAL4-aligned) are prefetched: their REAL4 reads for step k0 + KWG are
    // issued into registers before step k0's products and stored to local memory after them, so the global
    // latency hides behind the fma of the same work-item. Other tiles are staged as they come (edges, tails).
    const bool rows_in = vec && m0 + MWG <= M && n0 + NWG <= N;
    stage_a_kmajor(Al, a + (long)m0 * lda, lda, MWG, M - m0, K, vec, tid);
    if (trans_b)
        stage_b_kmajor(Bl, b + (long)n0 * ldb, ldb, NWG, N - n0, K, vec, tid);
    else
        stage_b_nmajor(Bl, b + n0, ldb, NWG, N - n0, K, vec, tid);
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int k0 = 0; k0 < K; k0 += KWG) {
        const int k1 = k0 + KWG;
        const bool prefetch = PREFETCH && rows_in && K - k1 >= KWG;
        REAL4 ra[PF_A], rb[PF_B];
        if (prefetch) {
#pragma unroll
            for (int p = 0; p < PF_A; ++p) {
                const int e = tid + p * WGS;
                if (e < MWG * (KWG / 4))
                    ra[p] = LD4A_A(a, (long)(m0 + KMAJOR_ROW(e, MWG)) * lda + k1 + KMAJOR_K(e, MWG));
            }
#pragma unroll
            for (int p = 0; p < PF_B; ++p) {
                const int e = tid + p * WGS;
                if (e < NWG * (KWG / 4))
                    rb[p] = trans_b ? LD4A_B(b, (long)(n0 + KMAJOR_ROW(e, NWG)) * ldb + k1 + KMAJOR_K(e, NWG))
                                    : LD4A_B(b, (long)(k1 + e / (NWG / 4)) * ldb + n0 + (e % (NWG / 4)) * 4);
            }
        }
#pragma unroll
        for (int kk = 0; kk < KWG; ++kk) {
            REAL ar[MWI], br[NWI];
#pragma unroll
            for (int ri = 0; ri < MWI / VWM; ++ri) {
                const REALVM v = ((__local REALVM *)Al)[kk * (MWG / VWM) + ri * MDIMC + ty];
                UNPACK_M((ar + ri * VWM), v);
            }
#pragma unroll
            for (int rj = 0; rj < NWI / VWN; ++rj) {
                const REALVN v = ((__local REALVN *)Bl)[kk * (NWG / VWN) + rj * NDIMC + tx];
                UNPACK_N((br + rj * VWN), v);
            }
#pragma unroll
            for (int i = 0; i < MWI; ++i)
#pragma unroll
                for (int j = 0; j < NWI; ++j)
                    acc[i][j] = fma(ar[i], br[j], acc[i][j]);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        if (k1 >= K)
            break;
        if (prefetch) {
#pragma unroll
            for (int p = 0; p < PF_A; ++p) {
                const int e = tid + p * WGS;
                if (e < MWG * (KWG / 4))
                    store_kmajor4(Al, MWG, KMAJOR_ROW(e, MWG), KMAJOR_K(e, MWG), ra[p]);
            }
#pragma unroll
            for (int p = 0; p < PF_B; ++p) {
                const int e = tid + p * WGS;
                if (e >= NWG * (KWG / 4))
                    continue;
                if (trans_b) {
                    store_kmajor4(Bl, NWG, KMAJOR_ROW(e, NWG), KMAJOR_K(e, NWG), rb[p]);
                } else {
                    Bl4[e] = rb[p];    // kk * NWG + j with kk = e / (NWG/4), j = (e % (NWG/4)) * 4
                }
            }
        } else {
            stage_a_kmajor(Al, a + (long)m0 * lda + k1, lda, MWG, M - m0, K - k1, vec, tid);
            if (trans_b)
                stage_b_kmajor(Bl, b + (long)n0 * ldb + k1, ldb, NWG, N - n0, K - k1, vec, tid);
            else
                stage_b_nmajor(Bl, b + (long)k1 * ldb + n0, ldb, NWG, N - n0, K - k1, vec, tid);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }

    const bool full = rows_in;
#pragma unroll
    for (int i = 0; i < MWI; ++i) {
        const int m = m0 + (i / VWM) * (MDIMC * VWM) + ty * VWM + i % VWM;
#pragma unroll
        for (int rj = 0; rj < NWI / VWN; ++rj) {
            const int n = n0 + rj * (NDIMC * VWN) + tx * VWN;
#if VWN == 4
            if (full) {   // n is a multiple of 4 and ldc too: one aligned REAL4 store
                ST4A_D((REAL4)(EPILOGUE(acc[i][rj * 4 + 0], m, n + 0),
                               EPILOGUE(acc[i][rj * 4 + 1], m, n + 1),
                               EPILOGUE(acc[i][rj * 4 + 2], m, n + 2),
                               EPILOGUE(acc[i][rj * 4 + 3], m, n + 3)),
                       c, (long)m * ldc + n);
                continue;
            }
#endif
#pragma unroll
            for (int jv = 0; jv < VWN; ++jv)
                if (m < M && n + jv < N)
                    STORE(c, (long)m * ldc + n + jv, EPILOGUE(acc[i][rj * VWN + jv], m, n + jv));
        }
    }
}

/*
 * multimodal_store.kernels._simd: float32 inner products of a few float32 queries with rows
 * stored as float16, bfloat16 or float32, read in place (a contiguous range or by index).
 *
 * Why it exists: one query over half-precision rows is memory-bound, and neither torch nor the
 * SIMD libraries stream stored halves at the memory's speed on CPU. This kernel converts each
 * 8-element chunk in registers (F16C / a 16-bit shift for bfloat16) and accumulates in float32
 * with FMA, one row at a time (one sequential stream) with up to 8 independent accumulators,
 * for up to 8 queries at once (a row block is re-read from cache per group of 8). More than 48
 * queries take a GEMM-like path: each block of 64 rows is
 * converted once and transposed into 8-row panels, and register tiles of 6 queries x 16 rows
 * score it (12 FMAs per two panel loads and six broadcasts). Either way the rows are read
 * from memory once.
 *
 * The results equal those of converting the rows to float32 and multiplying in float32, up to
 * the order of the float32 additions. The AVX2 code is compiled per function (target
 * attributes) and used only when the CPU reports AVX2, FMA and F16C (`supported()`); on other
 * CPUs and architectures the Python side keeps its torch paths.
 *
 * Python API (private; the checked wrapper is multimodal_store.kernels.cpu_simd):
 *   supported() -> bool
 *   scores(out, out_ld, queries, nq, d, rows, row_ld, dtype, index, n, norms) -> None
 *   topk1(out_scores, out_rows, k, query, d, rows, row_ld, dtype, index, n, row0, norms,
 *         metric, qscale, mask) -> int
 * Every buffer argument is an address (int). out[j * out_ld + i] receives query j . row i for
 * i < n; row i is at rows + (index ? index[i] : i) * row_ld bytes; norms (0 = not wanted)
 * receives the squared float32 norm of every row. dtype: 0 float32, 1 float16, 2 bfloat16.
 * topk1 keeps the k best rows of one query while scoring (no score array, no second pass):
 * the internal score of global row r (r = index ? index[i] : row0 + i) is, by metric,
 * 0 ip: q.x, 1 cosine: (q.x * qscale) * (1 / |x|) (0 for a zero row), 2 l2: 2 q.x - |x|^2,
 * with |x| from norms[r] (float32, by global row) or, when norms is 0, from the same pass;
 * rows with mask[r] == 0 (uint8, by global row; 0 = no mask), NaN or -inf scores never enter;
 * equal scores prefer the lower row. It writes the kept (score, row) pairs best first and
 * returns their count (<= k). The GIL is released while scoring.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { DT_F32 = 0, DT_F16 = 1, DT_BF16 = 2 };
enum { MAX_GROUP = 8, BLOCK_ROWS = 64 };
/* More queries than this take the packed path: packing (convert + transpose) costs ~150 ns per
 * 512-d row here, which only pays off over the row path's repeated conversions beyond ~48
 * queries (1 thread, 256k x 512: 16 queries 65 vs 98 ms float16; 64 queries 310 vs 283 ms). */
enum { PACKED_MIN_QUERIES = 48 };

static const size_t ELEM_SIZE[3] = {4, 2, 2};

typedef struct {
    const char *rows;      /* base address of the rows */
    Py_ssize_t row_ld;     /* bytes between consecutive rows */
    const int64_t *index;  /* NULL: rows 0..n-1 */
    const float *q;        /* padded queries, nq x dp, zeros beyond d */
    Py_ssize_t dp;         /* d rounded up to a multiple of 8 */
    Py_ssize_t d;
    float *out;
    Py_ssize_t out_ld;
    float *norms;          /* NULL when not wanted */
    Py_ssize_t n;          /* rows to score */
    Py_ssize_t ahead;      /* software prefetch of the row this many rows ahead (0: none) */
    int dt;                /* storage type of the rows */
} Job;

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define HAVE_AVX2_PATH 1
#include <immintrin.h>

#define TARGET __attribute__((target("avx2,fma,f16c")))
#define INLINE __attribute__((always_inline)) inline
#define UNROLL _Pragma("GCC unroll 16")

static TARGET INLINE __m256 load8(const char *p, int dt) {
    if (dt == DT_F16) {
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
    }
    if (dt == DT_BF16) {
        __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
        return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
    }
    return _mm256_loadu_ps((const float *)p);
}

static TARGET INLINE float hsum(__m256 v) {
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_movehdup_ps(a));
    return _mm_cvtss_f32(a);
}

/* Accumulators per query: enough independent FMA chains for one query, fewer for more. They do
 * not depend on whether norms are wanted, so the dots are the same either way. */
#define ACCS(Q) ((Q) == 1 ? 8 : (Q) == 2 ? 4 : (Q) <= 4 ? 2 : 1)
/* Accumulators of the squared norm (at most 13 of the 16 vector registers hold sums). */
#define NORM_ACCS(Q) (ACCS(Q) < 4 ? ACCS(Q) : 4)

/*
 * Rows [i0, i1) against queries [g, g + Q). Q, DT and NORM are compile-time constants in every
 * caller (the function is instantiated below), so the loops unroll and the accumulators live in
 * registers.
 */
static TARGET INLINE void rows_kernel(const Job *job, Py_ssize_t i0, Py_ssize_t i1, Py_ssize_t g,
                                      const int Q, const int DT, const int NORM) {
    const int A = ACCS(Q), NA = NORM_ACCS(Q);
    const size_t es = ELEM_SIZE[DT];
    const Py_ssize_t d = job->d, dp = job->dp;
    const Py_ssize_t d8 = d & ~(Py_ssize_t)7;
    const Py_ssize_t step = 8 * (Py_ssize_t)A;
    const float *q = job->q + g * dp;
    for (Py_ssize_t i = i0; i < i1; i++) {
        const Py_ssize_t r = job->index ? (Py_ssize_t)job->index[i] : i;
        const char *x = job->rows + r * job->row_ld;
        if (job->ahead && i + job->ahead < job->n) {
            const Py_ssize_t i2 = i + job->ahead;
            const char *p = job->rows + (job->index ? (Py_ssize_t)job->index[i2] : i2) * job->row_ld;
            for (Py_ssize_t c = 0; c < d * (Py_ssize_t)es; c += 64) _mm_prefetch(p + c, _MM_HINT_T0);
        }
        __m256 acc[MAX_GROUP][8];
        __m256 nacc[4];
        for (int j = 0; j < Q; j++)
            for (int a = 0; a < A; a++) acc[j][a] = _mm256_setzero_ps();
        for (int a = 0; a < NA; a++) nacc[a] = _mm256_setzero_ps();
        Py_ssize_t k = 0;
        for (; k + step <= d8; k += step) {
            for (int a = 0; a < A; a++) {
                const __m256 xv = load8(x + (size_t)(k + 8 * a) * es, DT);
                for (int j = 0; j < Q; j++)
                    acc[j][a] = _mm256_fmadd_ps(xv, _mm256_loadu_ps(q + j * dp + k + 8 * a), acc[j][a]);
                if (NORM) nacc[a % NA] = _mm256_fmadd_ps(xv, xv, nacc[a % NA]);
            }
        }
        for (; k < dp; k += 8) {
            __m256 xv;
            if (k < d8) {
                xv = load8(x + (size_t)k * es, DT);
            } else { /* the last d % 8 elements, zero-padded (the padded query is zero there) */
                char tail[32] = {0};
                memcpy(tail, x + (size_t)k * es, (size_t)(d - k) * es);
                xv = load8(tail, DT);
            }
            for (int j = 0; j < Q; j++)
                acc[j][0] = _mm256_fmadd_ps(xv, _mm256_loadu_ps(q + j * dp + k), acc[j][0]);
            if (NORM) nacc[0] = _mm256_fmadd_ps(xv, xv, nacc[0]);
        }
        for (int j = 0; j < Q; j++) {
            __m256 s = acc[j][0];
            for (int a = 1; a < A; a++) s = _mm256_add_ps(s, acc[j][a]);
            job->out[(g + j) * job->out_ld + i] = hsum(s);
        }
        if (NORM) {
            __m256 s = nacc[0];
            for (int a = 1; a < NA; a++) s = _mm256_add_ps(s, nacc[a]);
            job->norms[i] = hsum(s);
        }
    }
}

typedef void (*RowsFn)(const Job *, Py_ssize_t, Py_ssize_t, Py_ssize_t);

#define DEFINE_ROWS(Q, DT, NORM)                                                                   \
    static TARGET void rows_##Q##_##DT##_##NORM(const Job *job, Py_ssize_t i0, Py_ssize_t i1,     \
                                                Py_ssize_t g) {                                    \
        rows_kernel(job, i0, i1, g, Q, DT, NORM);                                                  \
    }
#define DEFINE_Q(DT, NORM)                                                                         \
    DEFINE_ROWS(1, DT, NORM) DEFINE_ROWS(2, DT, NORM) DEFINE_ROWS(3, DT, NORM)                     \
    DEFINE_ROWS(4, DT, NORM) DEFINE_ROWS(5, DT, NORM) DEFINE_ROWS(6, DT, NORM)                     \
    DEFINE_ROWS(7, DT, NORM) DEFINE_ROWS(8, DT, NORM)
DEFINE_Q(0, 0)
DEFINE_Q(0, 1)
DEFINE_Q(1, 0)
DEFINE_Q(1, 1)
DEFINE_Q(2, 0)
DEFINE_Q(2, 1)

#define TABLE_Q(DT, NORM)                                                                          \
    {rows_1_##DT##_##NORM, rows_2_##DT##_##NORM, rows_3_##DT##_##NORM, rows_4_##DT##_##NORM,       \
     rows_5_##DT##_##NORM, rows_6_##DT##_##NORM, rows_7_##DT##_##NORM, rows_8_##DT##_##NORM}
/* [dtype][norm][queries - 1] */
static const RowsFn ROWS[3][2][MAX_GROUP] = {
    {TABLE_Q(0, 0), TABLE_Q(0, 1)},
    {TABLE_Q(1, 0), TABLE_Q(1, 1)},
    {TABLE_Q(2, 0), TABLE_Q(2, 1)},
};

static int cpu_supported(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("f16c");
}

/* ---- batches of more than 8 queries: a packed, GEMM-like path ----
 * A block of 64 rows is converted to float32 once and transposed into 8-row panels
 * (panel[k * 8 + lane] = row lane, element k); a register tile of up to 6 queries x 2 panels
 * (12 accumulators, each lane one row) then needs per element k two panel loads, one broadcast
 * per query and 12 FMAs, instead of one load per FMA; conversions are shared by all queries. */
enum { PANEL = 8, TILE_Q = 6 };

static TARGET INLINE void transpose8(__m256 r[8]) {
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

/* Rows [i0, i0 + m) (m <= 64) into panels of dp x 8 floats; missing rows and columns are 0. */
static TARGET INLINE void pack_block(const Job *job, Py_ssize_t i0, Py_ssize_t m, float *panels, const int DT) {
    const size_t es = ELEM_SIZE[DT];
    const Py_ssize_t d = job->d, dp = job->dp, d8 = d & ~(Py_ssize_t)7;
    for (Py_ssize_t p0 = 0; p0 < m; p0 += PANEL) {
        const char *x[PANEL];
        for (int l = 0; l < PANEL; l++) {
            const Py_ssize_t i = i0 + p0 + l;
            x[l] = i < i0 + m ? job->rows + (job->index ? (Py_ssize_t)job->index[i] : i) * job->row_ld : NULL;
        }
        float *out = panels + p0 * dp;
        for (Py_ssize_t k = 0; k < dp; k += 8) {
            __m256 r[PANEL];
            for (int l = 0; l < PANEL; l++) {
                if (!x[l]) {
                    r[l] = _mm256_setzero_ps();
                } else if (k < d8) {
                    r[l] = load8(x[l] + (size_t)k * es, DT);
                } else {
                    char tail[32] = {0};
                    memcpy(tail, x[l] + (size_t)k * es, (size_t)(d - k) * es);
                    r[l] = load8(tail, DT);
                }
            }
            transpose8(r);
            for (int c = 0; c < 8; c++) _mm256_storeu_ps(out + (k + c) * PANEL, r[c]);
        }
    }
}

static TARGET void pack_block_f32(const Job *job, Py_ssize_t i0, Py_ssize_t m, float *panels) {
    pack_block(job, i0, m, panels, DT_F32);
}
static TARGET void pack_block_f16(const Job *job, Py_ssize_t i0, Py_ssize_t m, float *panels) {
    pack_block(job, i0, m, panels, DT_F16);
}
static TARGET void pack_block_bf16(const Job *job, Py_ssize_t i0, Py_ssize_t m, float *panels) {
    pack_block(job, i0, m, panels, DT_BF16);
}
typedef void (*PackFn)(const Job *, Py_ssize_t, Py_ssize_t, float *);
static const PackFn PACK[3] = {pack_block_f32, pack_block_f16, pack_block_bf16};

/* Queries [g, g + Q) against panels [p, p + P) of the packed block starting at row i0 (m rows). */
static TARGET INLINE void tile_kernel(const Job *job, const float *panels, Py_ssize_t i0, Py_ssize_t m,
                                      Py_ssize_t p, Py_ssize_t g, const int Q, const int P) {
    const Py_ssize_t d = job->d, dp = job->dp;
    const float *q = job->q + g * dp;
    const float *pa = panels + p * PANEL * dp;
    __m256 acc[TILE_Q][2];
    UNROLL for (int j = 0; j < Q; j++) {
        UNROLL for (int h = 0; h < P; h++) acc[j][h] = _mm256_setzero_ps();
    }
    for (Py_ssize_t k = 0; k < d; k++) {
        const __m256 x0 = _mm256_loadu_ps(pa + k * PANEL);
        const __m256 x1 = P > 1 ? _mm256_loadu_ps(pa + dp * PANEL + k * PANEL) : x0;
        UNROLL for (int j = 0; j < Q; j++) {
            const __m256 qb = _mm256_broadcast_ss(q + j * dp + k);
            acc[j][0] = _mm256_fmadd_ps(qb, x0, acc[j][0]);
            if (P > 1) acc[j][1] = _mm256_fmadd_ps(qb, x1, acc[j][1]);
        }
    }
    UNROLL for (int h = 0; h < P; h++) {
        const Py_ssize_t r0 = (p + h) * PANEL; /* first row of the panel, within the block */
        const Py_ssize_t valid = m - r0 < PANEL ? m - r0 : PANEL;
        UNROLL for (int j = 0; j < Q; j++) {
            float *o = job->out + (g + j) * job->out_ld + i0 + r0;
            if (valid == PANEL) {
                _mm256_storeu_ps(o, acc[j][h]);
            } else {
                float tmp[PANEL];
                _mm256_storeu_ps(tmp, acc[j][h]);
                memcpy(o, tmp, (size_t)valid * sizeof(float));
            }
        }
    }
}

typedef void (*TileFn)(const Job *, const float *, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t);
#define DEFINE_TILE(Q, P)                                                                          \
    static TARGET void tile_##Q##_##P(const Job *job, const float *panels, Py_ssize_t i0, Py_ssize_t m, \
                                      Py_ssize_t p, Py_ssize_t g) {                                \
        tile_kernel(job, panels, i0, m, p, g, Q, P);                                               \
    }
DEFINE_TILE(1, 1) DEFINE_TILE(2, 1) DEFINE_TILE(3, 1) DEFINE_TILE(4, 1) DEFINE_TILE(5, 1) DEFINE_TILE(6, 1)
DEFINE_TILE(1, 2) DEFINE_TILE(2, 2) DEFINE_TILE(3, 2) DEFINE_TILE(4, 2) DEFINE_TILE(5, 2) DEFINE_TILE(6, 2)
/* [panels - 1][queries - 1] */
static const TileFn TILES[2][TILE_Q] = {
    {tile_1_1, tile_2_1, tile_3_1, tile_4_1, tile_5_1, tile_6_1},
    {tile_1_2, tile_2_2, tile_3_2, tile_4_2, tile_5_2, tile_6_2},
};

/* Squared norms of the packed rows: lane sums over k, the same float32 values as the row path's
 * up to the order of the additions. */
static TARGET void panel_norms(const Job *job, const float *panels, Py_ssize_t i0, Py_ssize_t m) {
    const Py_ssize_t d = job->d, dp = job->dp;
    for (Py_ssize_t r0 = 0; r0 < m; r0 += PANEL) {
        const float *pa = panels + r0 * dp;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        Py_ssize_t k = 0;
        for (; k + 1 < d; k += 2) {
            const __m256 x0 = _mm256_loadu_ps(pa + k * PANEL), x1 = _mm256_loadu_ps(pa + (k + 1) * PANEL);
            a0 = _mm256_fmadd_ps(x0, x0, a0);
            a1 = _mm256_fmadd_ps(x1, x1, a1);
        }
        if (k < d) {
            const __m256 x0 = _mm256_loadu_ps(pa + k * PANEL);
            a0 = _mm256_fmadd_ps(x0, x0, a0);
        }
        float tmp[PANEL];
        _mm256_storeu_ps(tmp, _mm256_add_ps(a0, a1));
        const Py_ssize_t valid = m - r0 < PANEL ? m - r0 : PANEL;
        memcpy(job->norms + i0 + r0, tmp, (size_t)valid * sizeof(float));
    }
}

/* The rows of the next block into L2 while this one is scored (its compute hides the latency). */
static TARGET void prefetch_block(const Job *job, Py_ssize_t i0, Py_ssize_t n) {
    const Py_ssize_t i1 = i0 + BLOCK_ROWS < n ? i0 + BLOCK_ROWS : n;
    const Py_ssize_t bytes = job->d * (Py_ssize_t)ELEM_SIZE[job->dt];
    for (Py_ssize_t i = i0; i < i1; i++) {
        const char *p = job->rows + (job->index ? (Py_ssize_t)job->index[i] : i) * job->row_ld;
        for (Py_ssize_t c = 0; c < bytes; c += 64) _mm_prefetch(p + c, _MM_HINT_T1);
    }
}

static void run_packed(const Job *job, Py_ssize_t nq, Py_ssize_t n, int dt, float *panels) {
    for (Py_ssize_t i0 = 0; i0 < n; i0 += BLOCK_ROWS) {
        const Py_ssize_t m = n - i0 < BLOCK_ROWS ? n - i0 : BLOCK_ROWS;
        PACK[dt](job, i0, m, panels);
        prefetch_block(job, i0 + m, n);
        if (job->norms) panel_norms(job, panels, i0, m);
        const Py_ssize_t np = (m + PANEL - 1) / PANEL;
        for (Py_ssize_t g = 0; g < nq; g += TILE_Q) {
            const Py_ssize_t qn = nq - g < TILE_Q ? nq - g : TILE_Q;
            for (Py_ssize_t p = 0; p < np; p += 2) {
                const int pn = np - p < 2 ? 1 : 2;
                TILES[pn - 1][qn - 1](job, panels, i0, m, p, g);
            }
        }
    }
}

static void run_rows(const Job *job, Py_ssize_t nq, Py_ssize_t n, int dt) {
    for (Py_ssize_t i0 = 0; i0 < n; i0 += BLOCK_ROWS) {
        const Py_ssize_t i1 = i0 + BLOCK_ROWS < n ? i0 + BLOCK_ROWS : n;
        for (Py_ssize_t g = 0; g < nq; g += MAX_GROUP) {
            const Py_ssize_t qn = nq - g < MAX_GROUP ? nq - g : MAX_GROUP;
            const int norm = job->norms != NULL && g == 0;
            ROWS[dt][norm][qn - 1](job, i0, i1, g);
        }
    }
}

/* Scores the job (GIL released); 0 when the packed block buffer cannot be allocated. */
static int run_job(const Job *job, Py_ssize_t nq, Py_ssize_t n, int dt) {
    if (nq > PACKED_MIN_QUERIES) { /* many query groups: pack each block once */
        float *panels = (float *)malloc((size_t)(BLOCK_ROWS * job->dp) * sizeof(float));
        if (!panels) return 0;
        Py_BEGIN_ALLOW_THREADS
        run_packed(job, nq, n, dt, panels);
        Py_END_ALLOW_THREADS
        free(panels);
        return 1;
    }
    Py_BEGIN_ALLOW_THREADS
    run_rows(job, nq, n, dt);
    Py_END_ALLOW_THREADS
    return 1;
}

typedef struct {
    Py_ssize_t k, count;
    float *score; /* best first */
    int64_t *row;
} Best;

/* (s, r) ranks before (t, u): higher score, or the same score and a lower row */
static inline int ranks_before(float s, int64_t r, float t, int64_t u) { return s > t || (s == t && r < u); }

static void best_insert(Best *b, float s, int64_t r) {
    if (b->count == b->k && !ranks_before(s, r, b->score[b->k - 1], b->row[b->k - 1])) return;
    Py_ssize_t lo = 0, hi = b->count; /* first position that (s, r) ranks before */
    while (lo < hi) {
        const Py_ssize_t mid = (lo + hi) / 2;
        if (ranks_before(s, r, b->score[mid], b->row[mid])) hi = mid;
        else lo = mid + 1;
    }
    const Py_ssize_t keep = (b->count < b->k ? b->count : b->k - 1) - lo;
    memmove(b->score + lo + 1, b->score + lo, (size_t)keep * sizeof(float));
    memmove(b->row + lo + 1, b->row + lo, (size_t)keep * sizeof(int64_t));
    b->score[lo] = s;
    b->row[lo] = r;
    if (b->count < b->k) b->count++;
}

enum { METRIC_IP = 0, METRIC_COSINE = 1, METRIC_L2 = 2 };

typedef struct {
    Py_ssize_t row0;
    const float *norms; /* given |x| by global row, or NULL */
    const uint8_t *mask;
    int metric;
    float qscale;
} Rank;

static void run_topk1(const Job *job, Py_ssize_t n, int dt, const Rank *rk, Best *best) {
    float dots[BLOCK_ROWS], sq[BLOCK_ROWS];
    const int norm = rk->metric != METRIC_IP && rk->norms == NULL;
    Job part = *job;
    part.out = dots;
    part.out_ld = BLOCK_ROWS;
    part.norms = norm ? sq : NULL;
    for (Py_ssize_t i0 = 0; i0 < n; i0 += BLOCK_ROWS) {
        const Py_ssize_t m = n - i0 < BLOCK_ROWS ? n - i0 : BLOCK_ROWS;
        if (job->index) part.index = job->index + i0;
        else part.rows = job->rows + i0 * job->row_ld;
        part.n = n - i0; /* prefetching runs on past the block */
        ROWS[dt][norm][0](&part, 0, m, 0);
        for (Py_ssize_t i = 0; i < m; i++) {
            const int64_t r = job->index ? job->index[i0 + i] : (int64_t)(rk->row0 + i0 + i);
            if (rk->mask && !rk->mask[r]) continue;
            float s = dots[i];
            if (rk->metric == METRIC_COSINE) {
                const float xn = rk->norms ? rk->norms[r] : sqrtf(sq[i]);
                s = s * rk->qscale;
                s = s * (xn > 0.0f ? 1.0f / xn : 0.0f);
            } else if (rk->metric == METRIC_L2) {
                const float xn = rk->norms ? rk->norms[r] : 0.0f;
                const float x2 = rk->norms ? xn * xn : sq[i];
                s = s * 2.0f;
                s = s - x2;
            }
            if (!(s > -INFINITY)) continue; /* NaN and -inf never compete */
            if (best->count == best->k && s < best->score[best->k - 1]) continue; /* the common case */
            best_insert(best, s, r);
        }
    }
}
#else
static int cpu_supported(void) { return 0; }
static int run_job(const Job *job, Py_ssize_t nq, Py_ssize_t n, int dt) {
    (void)job, (void)nq, (void)n, (void)dt;
    return 1;
}
#endif

static int g_supported = -1;

static PyObject *py_supported(PyObject *self, PyObject *noargs) {
    (void)self, (void)noargs;
    if (g_supported < 0) g_supported = cpu_supported();
    return PyBool_FromLong(g_supported);
}

/* Checks shared by scores() and topk1(); 0 with a Python error set when they fail. */
static int check_common(int dt, Py_ssize_t nq, Py_ssize_t d, Py_ssize_t n, Py_ssize_t queries,
                        Py_ssize_t rows) {
    if (g_supported < 0) g_supported = cpu_supported();
    if (!g_supported) {
        PyErr_SetString(PyExc_RuntimeError, "this CPU has no AVX2 + FMA + F16C; use the torch path");
        return 0;
    }
    if (dt < DT_F32 || dt > DT_BF16) {
        PyErr_Format(PyExc_ValueError, "dtype code must be 0 (float32), 1 (float16) or 2 (bfloat16), got %d",
                     dt);
        return 0;
    }
    if (nq <= 0 || d <= 0 || n < 0 || !queries || (n > 0 && !rows)) {
        PyErr_Format(PyExc_ValueError,
                     "expected nq > 0, d > 0, n >= 0 and non-null buffers, got nq=%zd d=%zd n=%zd", nq, d, n);
        return 0;
    }
    return 1;
}

/* The zero-padded queries (nq x dp floats, free() them) and the job reading the rows. */
static float *prepare_job(Job *job, Py_ssize_t queries, Py_ssize_t nq, Py_ssize_t d, Py_ssize_t rows,
                          Py_ssize_t row_ld, int dt, Py_ssize_t index, Py_ssize_t n) {
    const Py_ssize_t dp = (d + 7) & ~(Py_ssize_t)7;
    float *qpad = (float *)calloc((size_t)(nq * dp), sizeof(float));
    if (!qpad) return (float *)PyErr_NoMemory();
    for (Py_ssize_t j = 0; j < nq; j++)
        memcpy(qpad + j * dp, (const float *)queries + j * d, (size_t)d * sizeof(float));
    /* Prefetch: rows read by position defeat the hardware prefetcher (4 rows ahead: 39 -> 25 ms
     * for 10% of 1M float16 rows); a contiguous half-precision stream gains ~10% from having
     * ~2 KiB more in flight; contiguous float32 gains nothing. */
    const Py_ssize_t row_bytes = d * (Py_ssize_t)ELEM_SIZE[dt];
    const Py_ssize_t ahead = index ? 4 : dt == DT_F32 ? 0 : (2048 + row_bytes - 1) / row_bytes;
    const Job j = {(const char *)rows, row_ld, (const int64_t *)index, qpad, dp, d, NULL, 0, NULL, n, ahead, dt};
    *job = j;
    return qpad;
}

static PyObject *py_scores(PyObject *self, PyObject *args) {
    (void)self;
    Py_ssize_t out, out_ld, queries, nq, d, rows, row_ld, index, n, norms;
    int dt;
    if (!PyArg_ParseTuple(args, "nnnnnnninnn", &out, &out_ld, &queries, &nq, &d, &rows, &row_ld, &dt,
                          &index, &n, &norms))
        return NULL;
    if (!check_common(dt, nq, d, n, queries, rows)) return NULL;
    if (out_ld < n || !out) {
        PyErr_Format(PyExc_ValueError, "expected out_ld >= n and an output buffer, got out_ld=%zd n=%zd",
                     out_ld, n);
        return NULL;
    }
    if (n == 0) Py_RETURN_NONE;
    Job job;
    float *qpad = prepare_job(&job, queries, nq, d, rows, row_ld, dt, index, n);
    if (!qpad) return NULL;
    job.out = (float *)out;
    job.out_ld = out_ld;
    job.norms = (float *)norms;
    const int ok = run_job(&job, nq, n, dt);
    free(qpad);
    if (!ok) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *py_topk1(PyObject *self, PyObject *args) {
    (void)self;
    Py_ssize_t out_scores, out_rows, k, query, d, rows, row_ld, index, n, row0, norms, mask;
    int dt, metric;
    float qscale;
    if (!PyArg_ParseTuple(args, "nnnnnnninnnnifn", &out_scores, &out_rows, &k, &query, &d, &rows, &row_ld,
                          &dt, &index, &n, &row0, &norms, &metric, &qscale, &mask))
        return NULL;
    if (!check_common(dt, 1, d, n, query, rows)) return NULL;
    if (k <= 0 || !out_scores || !out_rows || metric < 0 || metric > 2) {
        PyErr_Format(PyExc_ValueError, "expected k > 0, output buffers and metric 0..2, got k=%zd metric=%d",
                     k, metric);
        return NULL;
    }
    Job job;
    float *qpad = prepare_job(&job, query, 1, d, rows, row_ld, dt, index, n);
    if (!qpad) return NULL;
#ifdef HAVE_AVX2_PATH
    const Rank rank = {row0, (const float *)norms, (const uint8_t *)mask, metric, qscale};
    Best best = {k, 0, (float *)out_scores, (int64_t *)out_rows};
    Py_BEGIN_ALLOW_THREADS
    run_topk1(&job, n, dt, &rank, &best);
    Py_END_ALLOW_THREADS
    const Py_ssize_t count = best.count;
#else
    const Py_ssize_t count = 0;
    (void)row0, (void)norms, (void)mask;
#endif
    free(qpad);
    return PyLong_FromSsize_t(count);
}

static PyMethodDef METHODS[] = {
    {"supported", py_supported, METH_NOARGS, "Whether this CPU runs the kernel (AVX2, FMA, F16C)."},
    {"scores", py_scores, METH_VARARGS, "Inner products of float32 queries with stored rows (see the module source)."},
    {"topk1", py_topk1, METH_VARARGS, "The k best rows of one query, kept while scoring (see the module source)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_simd",
                                    "float32 inner products of queries with float16 / bfloat16 / float32 rows.",
                                    -1, METHODS, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__simd(void) { return PyModule_Create(&MODULE); }

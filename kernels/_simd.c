/*
 * multimodal_store.kernels._simd: float32 inner products of a few float32 queries with rows
 * stored as float16, bfloat16 or float32, read in place (a contiguous range or by index).
 *
 * Why it exists: one query over half-precision rows is memory-bound, and neither torch nor the
 * SIMD libraries stream stored halves at the memory's speed on CPU. This kernel converts each
 * 8-element chunk in registers (F16C / a 16-bit shift for bfloat16) and accumulates in float32
 * with FMA, one row at a time (one sequential stream) with up to 8 independent accumulators.
 * A block of rows is scored for every query group (8 queries per group) before moving on, so
 * the rows are read from memory once per block.
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
} Job;

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define HAVE_AVX2_PATH 1
#include <immintrin.h>

#define TARGET __attribute__((target("avx2,fma,f16c")))
#define INLINE __attribute__((always_inline)) inline

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

static void run_job(const Job *job, Py_ssize_t nq, Py_ssize_t n, int dt) {
    for (Py_ssize_t i0 = 0; i0 < n; i0 += BLOCK_ROWS) {
        const Py_ssize_t i1 = i0 + BLOCK_ROWS < n ? i0 + BLOCK_ROWS : n;
        for (Py_ssize_t g = 0; g < nq; g += MAX_GROUP) {
            const Py_ssize_t qn = nq - g < MAX_GROUP ? nq - g : MAX_GROUP;
            const int norm = job->norms != NULL && g == 0;
            ROWS[dt][norm][qn - 1](job, i0, i1, g);
        }
    }
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
static void run_job(const Job *job, Py_ssize_t nq, Py_ssize_t n, int dt) {
    (void)job, (void)nq, (void)n, (void)dt;
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
    const Job j = {(const char *)rows, row_ld, (const int64_t *)index, qpad, dp, d, NULL, 0, NULL, n, ahead};
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
    Py_BEGIN_ALLOW_THREADS
    run_job(&job, nq, n, dt);
    Py_END_ALLOW_THREADS
    free(qpad);
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

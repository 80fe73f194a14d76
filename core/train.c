/*
 * train.c - skip-gram with negative sampling, as word2vec.c does it, for
 * `semd train` (a corpus file) and for the daemon's trainer (text as it
 * arrives).
 *
 * What follows word2vec.c exactly: noise words drawn from counts^0.75; the
 * sub-sampling rule (keep a word with probability
 * (sqrt(c / (sample * total)) + 1) * (sample * total) / c); the reduced
 * window b drawn per centre word; the input vector of each context word
 * predicting the centre word and `negative` noise words, with the clipped
 * gradient at |f| > MAX_EXP; the linear learning-rate decay from alpha to
 * the floor alpha * 1e-4, recomputed every 10,000 words; the generator
 * next = next * 25214903917 + 11 per thread; Hogwild (workers update the
 * shared matrices without locks). Differences: a line is a sentence and
 * sentences are cut at 10,000 words, as gensim's LineSentence does; noise
 * words come from an alias table (noise.h) instead of word2vec's table
 * of 10^8 entries: the same distribution, without word2vec's rounding to
 * 10^-8, and a draw that stays in cache (one thread trained the Wikipedia
 * corpus at 26-29 % more words per second in back-to-back runs, with
 * analogy accuracy within half a point).
 *
 * The inner loop is the dot product and the two updates of a 100-float
 * row. At -O2 a plain loop is one serial chain of adds; the AVX2/FMA path
 * (chosen at run time) keeps two vector accumulators and fuses the
 * context-vector update with the error accumulation; the portable path
 * keeps eight partial sums.
 *
 * Pre-trained models carry no context vectors. By default they start at
 * zero, as word2vec starts them: the first updates then move only the
 * context vectors, towards the pre-trained input vectors, so a model's
 * neighbours stay where they were until the contexts have learnt, and new
 * words are pulled towards the words they appear with. SEMD_CTX_SCALED
 * starts them as a copy of the input vectors scaled to a mean norm of 1.
 * Measured on the 20k-word GloVe fixture fine-tuned on 1.3 M words of
 * Wikipedia (sample 1e-4, 2 threads): zeros keep 84.5 % of the 10 nearest
 * neighbours of 500 words and end at loss 2.065; the scaled copy keeps
 * 83.2 % at loss 2.084; analogy accuracy stays 67.6 % with both. Zeros
 * are the default.
 *
 * Online growth: a word below min_count waits in a candidate table; when it
 * reaches min_count it gets a row (amortised O(dims)). The noise table and
 * sub-sampling thresholds are rebuilt only when the vocabulary has grown
 * by 1 % or the total count by 10 % since the last build, so a post costs
 * in proportion to its own words; until then new words are trained as
 * centre and context words but not drawn as noise.
 *
 * Threads: a trainer belongs to one thread, which starts and joins the
 * workers inside each training call. Only the statistics (under stats_lock)
 * are read from other threads.
 */
#include "semd.h"

#include "crc32c.h"
#include "fileio.h"
#include "model.h"
#include "noise.h"
#include "vocab.h"

#include <errno.h>
#include <fcntl.h>
#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EXP_TABLE_SIZE 1000
#define MAX_EXP 6
#define MAX_SENTENCE 10000
#define SENT_END UINT32_MAX
#define CAND_BIT 0x80000000u
#define MAX_ROWS 0x7FFFFFF0u
#define FLUSH_WORDS 10000
#define LOSS_DECAY 0.9
#define DRAW_AHEAD 4096 /* noise words drawn ahead per block */
#define HOT_BYTES (16u << 20) /* per private copy of the most frequent rows */
#define HOT_MERGE_PAIRS 4000000 /* pairs between merges of the copies */
#define HOT_ROW_USES 250 /* uses of a frequent row between its write-backs */
#define CHUNKS_PER_THREAD 256 /* pieces of the stream per worker and epoch */
#define CHUNK_MIN 16384       /* words */

struct semd_trainer {
    struct semd_train_opts o;
    uint32_t dim;
    struct vocab voc;  /* rows */
    struct vocab cand; /* online words below min_count */
    uint32_t *cand_row; /* row a candidate became, or VOCAB_NONE */
    uint32_t cand_row_cap;
    uint64_t init_rows;

    float *syn0, *syn1; /* cap_rows x dim, 64-byte aligned */
    float *keep;        /* sub-sampling: keep probability per row */
    uint64_t cap_rows;
    uint64_t total; /* sum of row counts */

    struct noise_col *noise; /* noise words over rows [0, table_rows) */
    uint32_t table_rows;
    uint64_t table_total;

    float exp_table[EXP_TABLE_SIZE + 1];
    float nll_table[EXP_TABLE_SIZE + 1]; /* -log sigmoid(x) */
    int simd;

    uint32_t *ids; /* scratch token stream */
    size_t n_ids, cap_ids;

    pthread_mutex_t stats_lock;
    struct semd_train_stats st;
    double loss_sum, loss_pairs; /* decayed, for the running loss */
    double run_start;
};

struct run {
    struct semd_trainer *t;
    const uint32_t *stream;
    uint32_t epochs;
    uint32_t rows;
    uint64_t planned;
    const size_t *cut; /* chunk i is stream[cut[i], cut[i + 1]) */
    size_t chunks;
    _Atomic uint64_t next_chunk; /* over all epochs */
    _Atomic uint64_t done;
    _Atomic int failed; /* a worker could not allocate its buffers */
};

struct worker {
    struct run *run;
    uint32_t id;
    uint32_t hot;    /* rows in each private copy; 0 with one worker */
    size_t hot_part; /* floats from one copy to the next in hot_buf */
    float *hot_buf;  /* copy of syn0, copy of syn1, then their bases */
    uint32_t *hot_list; /* 2 x hot: rows taken into each copy */
    uint8_t *hot_uses;  /* 2 x hot: struct hot_side's uses */
};

/*
 * The matrices and the workers' copies are read at random rows; asking
 * for 2 MB pages spares most of the TLB misses and, when the copies are
 * first touched, most of the page faults (each a trip to the hypervisor on
 * a virtual machine). Freed with free().
 */
#define HUGE_PAGE ((size_t)2 << 20)
static void *
huge_alloc(size_t bytes)
{
    if (bytes < HUGE_PAGE)
        return aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    bytes = (bytes + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
    void *p = aligned_alloc(HUGE_PAGE, bytes);
#ifdef MADV_HUGEPAGE
    if (p)
        (void)madvise(p, bytes, MADV_HUGEPAGE);
#endif
    return p;
}

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void
semd_train_opts_init(struct semd_train_opts *o)
{
    memset(o, 0, sizeof *o);
    o->dim = 100;
    o->window = 5;
    o->negative = 5;
    o->sample = 1e-3;
    o->alpha = 0.025;
    o->min_count = 5;
    o->epochs = 1;
    o->threads = 1;
    o->seed = 1;
    o->lowercase = 1;
    o->punct = SEMD_PUNCT_SPLIT;
    o->ctx_init = SEMD_CTX_ZERO;
}

/* ------------------------------------------------------------ splitting */

struct splitter {
    const struct semd_train_opts *o;
    void (*emit)(void *, const char *, size_t);
    void *arg;
    char word[SEMD_MAX_WORD];
    size_t len;
    int high; /* the word holds a byte >= 0x80 */
};

static void
flush_word(struct splitter *s)
{
    if (s->len == 0)
        return;
    if (!s->high || model_utf8_valid_prefix(s->word, s->len) == s->len)
        s->emit(s->arg, s->word, s->len);
    s->len = 0;
    s->high = 0;
}

static void
put_byte(struct splitter *s, unsigned char c)
{
    if (s->len == SEMD_MAX_WORD) {
        /* cut a run that long; a cut inside a character fails the UTF-8
         * check and the piece is dropped */
        flush_word(s);
    }
    s->word[s->len++] = (char)c;
    if (c >= 0x80)
        s->high = 1;
}

static int
is_alnum(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
           (c >= 'A' && c <= 'Z') || c >= 0x80;
}

static int
is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static int
is_punct(unsigned char c)
{
    return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) ||
           (c >= 0x5B && c <= 0x60) || (c >= 0x7B && c <= 0x7E);
}

/* Length of an English clitic starting at p ('s 're 've 'll 'd 'm, after
 * the apostrophe) followed by a non-word byte, else 0. */
static size_t
clitic(const unsigned char *p, const unsigned char *end)
{
    static const char *const cl[] = {"s", "re", "ve", "ll", "d", "m"};
    for (size_t i = 0; i < sizeof cl / sizeof cl[0]; i++) {
        size_t n = strlen(cl[i]);
        if ((size_t)(end - p) < n)
            continue;
        int ok = 1;
        for (size_t k = 0; k < n && ok; k++)
            ok = (p[k] | 0x20) == (unsigned char)cl[i][k];
        if (ok && (p + n == end || !is_alnum(p[n])))
            return n;
    }
    return 0;
}

void
semd_train_split(const struct semd_train_opts *o, const char *text,
                 size_t len, void (*emit)(void *, const char *, size_t),
                 void *arg)
{
    struct splitter s = {.o = o, .emit = emit, .arg = arg};
    const unsigned char *p = (const unsigned char *)text;
    const unsigned char *end = p + len;
    int in_sentence = 0;
    int punct = o ? o->punct : SEMD_PUNCT_SPLIT;
    int lower = o ? o->lowercase : 1;
    while (p < end) {
        unsigned char c = *p;
        if (c == '\n') {
            flush_word(&s);
            if (in_sentence)
                emit(arg, "", 0);
            in_sentence = 0;
            p++;
            continue;
        }
        if (c <= ' ' || c == 0x7F) {
            flush_word(&s);
            p++;
            continue;
        }
        in_sentence = 1;
        if (punct != SEMD_PUNCT_KEEP && is_punct(c)) {
            unsigned char prev = s.len ? (unsigned char)s.word[s.len - 1] : 0;
            unsigned char next = p + 1 < end ? p[1] : 0;
            if (s.len && is_alnum(prev) && is_alnum(next) &&
                (c == '-' ||
                 ((c == '.' || c == ',') && is_digit(prev) && is_digit(next)))) {
                put_byte(&s, c);
                p++;
                continue;
            }
            if (c == '\'' && s.len && is_alnum(prev)) {
                size_t k = clitic(p + 1, end);
                if (k) {
                    flush_word(&s);
                    put_byte(&s, '\'');
                    p++;
                    continue; /* the clitic's letters follow */
                }
                if ((prev | 0x20) == 'n' && s.len > 1 && (next | 0x20) == 't' &&
                    (p + 2 == end || !is_alnum(p[2]))) {
                    s.len--;
                    flush_word(&s);
                    put_byte(&s, lower ? 'n' : prev);
                    put_byte(&s, '\'');
                    p++;
                    continue;
                }
            }
            flush_word(&s);
            if (punct == SEMD_PUNCT_SPLIT)
                emit(arg, (const char *)p, 1);
            p++;
            continue;
        }
        if (lower && c >= 'A' && c <= 'Z') {
            put_byte(&s, (unsigned char)(c + 32));
            p++;
            continue;
        }
        /* Latin-1 capitals U+00C0..U+00DE except U+00D7 (multiplication) */
        if (lower && c == 0xC3 && p + 1 < end && p[1] >= 0x80 &&
            p[1] <= 0x9E && p[1] != 0x97) {
            if (s.len + 2 > SEMD_MAX_WORD)
                flush_word(&s);
            put_byte(&s, 0xC3);
            put_byte(&s, (unsigned char)(p[1] + 0x20));
            p += 2;
            continue;
        }
        put_byte(&s, c);
        p++;
    }
    flush_word(&s);
    if (in_sentence)
        emit(arg, "", 0);
}

/* --------------------------------------------------------------- kernels */

/* Hogwild: workers read and write the shared rows without locks, by
 * design (word2vec and gensim do the same); ThreadSanitizer is told not to
 * instrument these accesses. */
#define HOGWILD __attribute__((no_sanitize("thread")))

HOGWILD static float
dot_gen(const float *a, const float *b, uint32_t n)
{
    float s[8] = {0};
    uint32_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            s[k] += a[i + k] * b[i + k];
    float r = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (; i < n; i++)
        r += a[i] * b[i];
    return r;
}

/* neu1e += g * c; c += g * in */
HOGWILD static void
upd_gen(float *neu1e, float *c, const float *in, float g, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        float t = c[i];
        neu1e[i] += g * t;
        c[i] = t + g * in[i];
    }
}

HOGWILD static void
add_gen(float *dst, const float *src, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        dst[i] += src[i];
}

HOGWILD __attribute__((target("avx2,fma"))) static inline float
dot_avx2(const float *a, const float *b, uint32_t n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    uint32_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i),
                             s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8),
                             _mm256_loadu_ps(b + i + 8), s1);
    }
    if (i + 8 <= n) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i),
                             s0);
        i += 8;
    }
    s0 = _mm256_add_ps(s0, s1);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s0),
                          _mm256_extractf128_ps(s0, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
    float r = _mm_cvtss_f32(h);
    for (; i < n; i++)
        r += a[i] * b[i];
    return r;
}

HOGWILD __attribute__((target("avx2,fma"))) static inline void
upd_avx2(float *neu1e, float *c, const float *in, float g, uint32_t n)
{
    __m256 gv = _mm256_set1_ps(g);
    uint32_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 t = _mm256_loadu_ps(c + i);
        _mm256_storeu_ps(neu1e + i,
                         _mm256_fmadd_ps(gv, t, _mm256_loadu_ps(neu1e + i)));
        _mm256_storeu_ps(c + i,
                         _mm256_fmadd_ps(gv, _mm256_loadu_ps(in + i), t));
    }
    for (; i < n; i++) {
        float t = c[i];
        neu1e[i] += g * t;
        c[i] = t + g * in[i];
    }
}

HOGWILD __attribute__((target("avx2,fma"))) static inline void
add_avx2(float *dst, const float *src, uint32_t n)
{
    uint32_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_add_ps(_mm256_loadu_ps(dst + i),
                                                _mm256_loadu_ps(src + i)));
    for (; i < n; i++)
        dst[i] += src[i];
}

/* Exact a % d without a division instruction (Lemire, Kaser and Kurz,
 * "Faster remainder by direct computation", 2019): a reduced window is
 * drawn per centre word, and a 64-bit divide costs more than the rest of
 * the draw. */
struct fastmod {
    unsigned __int128 m;
    uint64_t d;
};

static struct fastmod
fastmod_init(uint64_t d)
{
    return (struct fastmod){(unsigned __int128)-1 / d + 1, d};
}

static inline uint64_t
fastmod(uint64_t a, const struct fastmod *f)
{
    unsigned __int128 low = f->m * a;
    unsigned __int128 bottom = ((low & UINT64_MAX) * f->d) >> 64;
    unsigned __int128 top = (low >> 64) * f->d;
    return (uint64_t)((bottom + top) >> 64);
}

/* A worker's copies of the frequent rows of one matrix. */
struct hot_side {
    float *shared;  /* the matrix */
    float *copy;    /* rows [0, hot) */
    float *base;    /* the shared values the copies started from */
    uint8_t *uses;  /* per row: uses since taken or written back; 0: not */
    uint32_t *list; /* the rows taken, n of them */
    uint32_t n;
};

/* What one worker needs in its inner loop. */
struct ctx {
    float *syn0, *syn1;
    const struct noise_col *noise;
    uint32_t noise_rows;
    struct fastmod window_mod;
    uint32_t rows, dim, window, negative;
    const float *exp_table, *nll_table;
    float *neu1e;
    uint32_t *targets; /* noise words drawn ahead, tcap entries */
    int *reduced;      /* b per centre word of a block */
    size_t tcap;
    int block; /* centre words per block */
    uint64_t next_random;
    double loss;
    uint64_t pairs;
    /* with several workers, rows [0, hot) of syn0 and syn1 (the most
     * frequent words) are read and updated in this worker's copies (see
     * hot_row and merge_hot) */
    uint32_t hot;
    struct hot_side h0, h1;
    uint64_t unmerged; /* pairs since the last merge */
};

/* -log sigmoid(x) */
static inline float
nll(const struct ctx *c, float x)
{
    if (x >= MAX_EXP)
        return expf(-x);
    if (x <= -MAX_EXP)
        return -x;
    return c->nll_table[(int)((x + MAX_EXP) *
                              (EXP_TABLE_SIZE / MAX_EXP / 2))];
}

/*
 * Draws, for centre words [p0, p1) of a sentence, the reduced windows and
 * the noise words, taking the generator's values in word2vec's order,
 * ahead of the updates (which do not feed back into the generator). The
 * alias table's loads are independent of each other here, so what cache
 * misses they have overlap instead of stalling each update in turn.
 */
static void
draw_block(struct ctx *c, int n, int p0, int p1)
{
    const int window = (int)c->window;
    uint64_t next_random = c->next_random;
    size_t k = 0;
    for (int pos = p0; pos < p1; pos++) {
        next_random = next_random * 25214903917ull + 11;
        int b = (int)fastmod(next_random, &c->window_mod);
        c->reduced[pos - p0] = b;
        for (int a = b; a < window * 2 + 1 - b; a++) {
            int cpos = pos - window + a;
            if (a == window || cpos < 0 || cpos >= n)
                continue;
            for (uint32_t d = 0; d < c->negative; d++) {
                next_random = next_random * 25214903917ull + 11;
                c->targets[k++] =
                    noise_draw(c->noise, c->noise_rows, next_random);
            }
        }
    }
    c->next_random = next_random;
}

/* Adds what a worker changed in a row since it took it to the shared
 * row, and starts the copy again from the shared value. */
HOGWILD static void
write_back(struct hot_side *h, size_t o, uint32_t dim)
{
    for (uint32_t i = 0; i < dim; i++) {
        float v = h->shared[o + i] + (h->copy[o + i] - h->base[o + i]);
        h->shared[o + i] = v;
        h->copy[o + i] = v;
        h->base[o + i] = v;
    }
}

/* The worker's copy of frequent row `row`: taken from the shared row at
 * its first use, written back every HOT_ROW_USES uses. */
HOGWILD static inline float *
hot_row(struct hot_side *h, uint32_t row, uint32_t dim)
{
    size_t o = (size_t)row * dim;
    uint8_t u = h->uses[row];
    if (u == 0) {
        /* a loop, not memcpy: ThreadSanitizer sees inside memcpy */
        for (uint32_t i = 0; i < dim; i++)
            h->copy[o + i] = h->base[o + i] = h->shared[o + i];
        h->list[h->n++] = row;
    } else if (u >= HOT_ROW_USES) {
        write_back(h, o, dim);
        u = 0;
    }
    h->uses[row] = (uint8_t)(u + 1);
    return h->copy + o;
}

static inline float *
in_row(struct ctx *c, uint32_t row)
{
    if (row >= c->hot)
        return c->syn0 + (uint64_t)row * c->dim;
    return hot_row(&c->h0, row, c->dim);
}

static inline float *
out_row(struct ctx *c, uint32_t row)
{
    if (row >= c->hot)
        return c->syn1 + (uint64_t)row * c->dim;
    return hot_row(&c->h1, row, c->dim);
}

HOGWILD static inline void
prefetch_row(const float *row, uint32_t dim)
{
    const char *p = (const char *)row;
    for (uint32_t o = 0; o < dim * sizeof(float); o += 64)
        __builtin_prefetch(p + o, 1, 3);
}

/* Prefetches what out_row will touch for `row`: the worker's copy, or the
 * shared row; when that use writes the copy back, the base and the shared
 * row (most likely last written by another core) instead, as the copy of
 * a row used that often is in cache already. */
static inline void
prefetch_out(const struct ctx *c, uint32_t row)
{
    size_t o = (size_t)row * c->dim;
    if (row < c->hot) {
        uint8_t u = c->h1.uses[row];
        if (u && u < HOT_ROW_USES) {
            prefetch_row(c->h1.copy + o, c->dim);
            return;
        }
        if (u)
            prefetch_row(c->h1.base + o, c->dim);
    }
    prefetch_row(c->syn1 + o, c->dim);
}

/* One sentence of skip-gram, word2vec.c's loop; DOT/UPD/ADD pick the
 * kernels. While one pair is updated, the rows of the next pair's noise
 * words are prefetched. */
#define SG_SENTENCE(NAME, ATTR, DOT, UPD, ADD)                                \
    ATTR static void NAME(struct ctx *c, const uint32_t *sen, int n,         \
                          float alpha)                                        \
    {                                                                         \
        const uint32_t dim = c->dim, neg = c->negative;                       \
        const int window = (int)c->window;                                    \
        double loss = 0;                                                      \
        uint64_t pairs = 0;                                                   \
        for (int p0 = 0; p0 < n; p0 += c->block) {                            \
            int p1 = p0 + c->block < n ? p0 + c->block : n;                   \
            draw_block(c, n, p0, p1);                                         \
            const uint32_t *tg = c->targets;                                  \
            for (int pos = p0; pos < p1; pos++) {                             \
                const uint32_t word = sen[pos];                               \
                const int b = c->reduced[pos - p0];                           \
                for (int a = b; a < window * 2 + 1 - b; a++) {                \
                    int cpos = pos - window + a;                              \
                    if (a == window || cpos < 0 || cpos >= n)                 \
                        continue;                                             \
                    for (uint32_t j = 0; j < neg; j++)                        \
                        prefetch_out(c, tg[neg + j]);                 \
                    float *in = in_row(c, sen[cpos]);                         \
                    memset(c->neu1e, 0, dim * sizeof(float));                 \
                    for (uint32_t j = 0; j <= neg; j++) {                     \
                        uint32_t target = j ? tg[j - 1] : word;               \
                        if (j && target == word)                              \
                            continue;                                         \
                        const float label = j == 0 ? 1.0f : 0.0f;             \
                        float *out = out_row(c, target);                      \
                        float f = DOT(in, out, dim);                          \
                        float g;                                              \
                        if (f > MAX_EXP)                                      \
                            g = (label - 1) * alpha;                          \
                        else if (f < -MAX_EXP)                                \
                            g = (label - 0) * alpha;                          \
                        else                                                  \
                            g = (label -                                      \
                                 c->exp_table[(int)((f + MAX_EXP) *           \
                                                    (EXP_TABLE_SIZE /         \
                                                     MAX_EXP / 2))]) *        \
                                alpha;                                        \
                        loss += nll(c, j == 0 ? f : -f);                      \
                        UPD(c->neu1e, out, in, g, dim);                       \
                    }                                                         \
                    ADD(in, c->neu1e, dim);                                   \
                    tg += neg;                                                \
                    pairs++;                                                  \
                }                                                             \
            }                                                                 \
        }                                                                     \
        c->loss += loss;                                                      \
        c->pairs += pairs;                                                    \
        c->unmerged += pairs;                                                 \
    }

SG_SENTENCE(sentence_gen, HOGWILD, dot_gen, upd_gen, add_gen)
SG_SENTENCE(sentence_avx2, HOGWILD __attribute__((target("avx2,fma"))),
            dot_avx2,
            upd_avx2, add_avx2)

/* ---------------------------------------------------------------- workers */

/*
 * Why each worker keeps its own copy of the frequent rows. Rows are ordered
 * most frequent first; with sub-sampling the kept words spread over the
 * first thousands of rows, and the noise words drawn from the
 * unigram^0.75 distribution fall on the first 1024 rows 44 % of the time
 * (20 % slice of the Wikipedia corpus). With two workers sharing every
 * row, a row that stayed in one core's cache between two uses has about even
 * odds of having been written by the other core meanwhile, so what is a
 * cache hit for one worker becomes a transfer of the row's cache lines
 * from the other core for two. Measured: two workers sharing all rows
 * spent about 50 % more CPU time per word than one, while two separate
 * one-thread processes each ran at full speed; private copies of only the
 * first 1024 rows recovered a third of that, private copies of every row
 * nearly all of it.
 *
 * So with several workers, rows [0, hot) of syn0 and syn1 (HOT_BYTES per
 * matrix) are read and updated in a worker's private copies (hot_row). At
 * its first use a row is taken: the shared value goes into the copy and
 * into a base. Every HOT_ROW_USES uses the worker writes the row back:
 * it adds what it changed (copy - base) to the shared row and starts again
 * from the sum, which carries the other workers' changes. So a frequent
 * row crosses between cores once per HOT_ROW_USES uses instead of at
 * nearly every use, and sees the others' changes at most HOT_ROW_USES of
 * its own updates late. Rows used fewer times are written back at the
 * merge every HOT_MERGE_PAIRS pairs and when the worker ends. No update is
 * lost (plain Hogwild loses some when two workers write a row at the
 * same moment). Measured on the Wikipedia corpus: writing rows back only
 * at a merge every 4 M pairs ran as fast but cost 4.5 points of analogy
 * accuracy (two workers pushing the same row apart for a second); written
 * back every 64 to 250 uses the accuracy matches one worker's (every 250
 * ran 5-8 % faster than every 64; the count is a byte). Rows past `hot`
 * are shared as in word2vec: making all 100,000 rows private ran no
 * faster than the first 42,000 (16 MB). With one worker nothing is copied
 * and the updates are word2vec's.
 */
HOGWILD static void
merge_side(struct hot_side *h, uint32_t dim)
{
    for (uint32_t k = 0; k < h->n; k++) {
        write_back(h, (size_t)h->list[k] * dim, dim);
        h->uses[h->list[k]] = 0;
    }
    h->n = 0;
}

static void
merge_hot(struct ctx *c)
{
    merge_side(&c->h0, c->dim);
    merge_side(&c->h1, c->dim);
    c->unmerged = 0;
}

static void
flush_stats(struct semd_trainer *t, uint64_t words, struct ctx *c,
            float alpha)
{
    pthread_mutex_lock(&t->stats_lock);
    t->st.words_trained += words;
    t->st.run_done += words;
    t->st.pairs += c->pairs;
    t->loss_sum = t->loss_sum * LOSS_DECAY + c->loss;
    t->loss_pairs = t->loss_pairs * LOSS_DECAY + (double)c->pairs;
    if (t->loss_pairs > 0)
        t->st.loss = t->loss_sum / t->loss_pairs;
    t->st.alpha = alpha;
    double el = now_s() - t->run_start;
    if (el > 0)
        t->st.words_per_sec = (double)t->st.run_done / el;
    pthread_mutex_unlock(&t->stats_lock);
    c->loss = 0;
    c->pairs = 0;
}

static void *
worker_main(void *arg)
{
    struct worker *w = arg;
    struct run *r = w->run;
    struct semd_trainer *t = r->t;
    const float start_alpha = (float)t->o.alpha;
    float alpha = start_alpha;
    struct ctx c = {
        .syn0 = t->syn0,
        .syn1 = t->syn1,
        .noise = t->noise,
        .noise_rows = t->table_rows,
        .window_mod = fastmod_init(t->o.window),
        .rows = r->rows,
        .dim = t->dim,
        .window = t->o.window,
        .negative = t->noise ? t->o.negative : 0,
        .exp_table = t->exp_table,
        .nll_table = t->nll_table,
        .next_random = t->o.seed + w->id,
        .hot = w->hot,
        .h0 = {.shared = t->syn0,
               .copy = w->hot_buf,
               .base = w->hot_buf + 2 * w->hot_part,
               .uses = w->hot_uses,
               .list = w->hot_list},
        .h1 = {.shared = t->syn1,
               .copy = w->hot_buf + w->hot_part,
               .base = w->hot_buf + 3 * w->hot_part,
               .uses = w->hot_uses + w->hot,
               .list = w->hot_list + w->hot},
    };
    /* room for one block's noise words, plus one pair of prefetch slack */
    size_t per_word = 2 * (size_t)c.window * (c.negative ? c.negative : 1);
    c.block = (int)(DRAW_AHEAD / per_word ? DRAW_AHEAD / per_word : 1);
    c.tcap = (size_t)c.block * per_word + c.negative;
    c.targets = calloc(c.tcap, sizeof *c.targets);
    c.reduced = malloc((size_t)c.block * sizeof *c.reduced);
    c.neu1e = malloc(t->dim * sizeof *c.neu1e);
    uint32_t *sen = malloc(MAX_SENTENCE * sizeof *sen);
    if (!c.targets || !c.reduced || !c.neu1e || !sen) {
        free(c.targets);
        free(c.reduced);
        free(c.neu1e);
        free(sen);
        atomic_store(&r->failed, 1);
        return NULL;
    }
    const double sample = t->o.sample;
    const uint64_t planned = r->planned;
    uint64_t words = 0; /* not yet flushed */
    const uint64_t chunks = (uint64_t)r->chunks * r->epochs;
    for (;;) {
        uint64_t k = atomic_fetch_add(&r->next_chunk, 1);
        if (k >= chunks)
            break;
        size_t pos = r->cut[k % r->chunks], end = r->cut[k % r->chunks + 1];
        while (pos < end) {
            int n = 0;
            while (pos < end && n < MAX_SENTENCE) {
                uint32_t id = r->stream[pos++];
                if (id == SENT_END)
                    break;
                words++;
                if (sample > 0) {
                    c.next_random = c.next_random * 25214903917ull + 11;
                    if (t->keep[id] <
                        (float)(c.next_random & 0xFFFF) / 65536.0f)
                        continue;
                }
                sen[n++] = id;
            }
            if (words >= FLUSH_WORDS) {
                uint64_t done = atomic_fetch_add(&r->done, words) + words;
                alpha = start_alpha *
                        (float)(1.0 - (double)done / (double)(planned + 1));
                if (alpha < start_alpha * 0.0001f)
                    alpha = start_alpha * 0.0001f;
                flush_stats(t, words, &c, alpha);
                words = 0;
            }
            if (n > 1) {
                if (t->simd)
                    sentence_avx2(&c, sen, n, alpha);
                else
                    sentence_gen(&c, sen, n, alpha);
                if (c.hot && c.unmerged >= HOT_MERGE_PAIRS)
                    merge_hot(&c);
            }
        }
    }
    if (c.hot)
        merge_hot(&c);
    atomic_fetch_add(&r->done, words);
    flush_stats(t, words, &c, alpha);
    free(c.targets);
    free(c.reduced);
    free(c.neu1e);
    free(sen);
    return NULL;
}

/* Trains epochs passes over stream[0, n) with the configured threads. */
static int
run_stream(struct semd_trainer *t, const uint32_t *stream, size_t n,
           uint64_t words, uint32_t epochs, struct semd_err *err)
{
    uint32_t threads = t->o.threads ? t->o.threads : 1;
    /* tiny posts are not worth a thread each */
    if (words < (uint64_t)threads * 2000)
        threads = 1;
    struct run r = {.t = t, .stream = stream, .epochs = epochs,
                    .rows = t->voc.n, .planned = words * epochs};
    atomic_init(&r.done, 0);
    atomic_init(&r.failed, 0);
    pthread_mutex_lock(&t->stats_lock);
    t->st.run_done = 0;
    t->st.run_planned = r.planned;
    t->st.alpha = t->o.alpha;
    t->run_start = now_s();
    pthread_mutex_unlock(&t->stats_lock);

    /* Workers take the stream in chunks, one after another, so a worker
     * slowed by something else on its core does not leave the others
     * waiting for its share at the end; small chunks keep that wait short
     * (Wikipedia corpus, two workers: 32 chunks each left one idle for
     * 0.8 s at the end of 35 s, 256 each for 0.04 s). A chunk ends after
     * a sentence when one ends within MAX_SENTENCE words (longer lines are
     * cut anyway); one worker reads the stream in one piece, exactly as
     * word2vec. */
    size_t chunks = 1;
    if (threads > 1) {
        chunks = (size_t)threads * CHUNKS_PER_THREAD;
        if (n / chunks < CHUNK_MIN)
            chunks = n / CHUNK_MIN ? n / CHUNK_MIN : 1;
    }
    size_t *cut = malloc((chunks + 1) * sizeof *cut);
    struct worker *ws = calloc(threads, sizeof *ws);
    pthread_t *th = calloc(threads, sizeof *th);
    if (!ws || !th || !cut) {
        free(cut);
        free(ws);
        free(th);
        return semd_err_set(err, SEMD_ENOMEM, "out of memory");
    }
    cut[0] = 0;
    for (size_t i = 1; i < chunks; i++) {
        size_t e = n / chunks * i, lim = e + MAX_SENTENCE;
        if (e < cut[i - 1])
            e = cut[i - 1];
        size_t s = e;
        while (s < n && s < lim && stream[s - 1] != SENT_END)
            s++;
        cut[i] = s < n && s < lim ? s : e;
    }
    cut[chunks] = n;
    r.cut = cut;
    r.chunks = chunks;
    atomic_init(&r.next_chunk, 0);

    /* the workers' copies of the most frequent rows (see hot_row and
     * merge_hot); a worker without them, for want of memory, updates the
     * shared rows as plain Hogwild does */
    uint32_t hot = (uint32_t)(HOT_BYTES / (t->dim * sizeof(float)));
    if (hot > r.rows)
        hot = r.rows;
    size_t part = ((size_t)hot * t->dim + 15) & ~(size_t)15;
    for (uint32_t i = 0; i < threads; i++) {
        ws[i] = (struct worker){.run = &r, .id = i};
        if (threads == 1 || hot == 0)
            continue;
        float *buf = huge_alloc(4 * part * sizeof(float));
        uint32_t *list = malloc(2 * (size_t)hot * sizeof *list);
        uint8_t *uses = calloc(2 * (size_t)hot, 1);
        if (!buf || !list || !uses) {
            free(buf);
            free(list);
            free(uses);
            continue;
        }
        ws[i].hot = hot;
        ws[i].hot_part = part;
        ws[i].hot_buf = buf;
        ws[i].hot_list = list;
        ws[i].hot_uses = uses;
    }
    uint32_t started = 0;
    int rc = 0;
    for (; started < threads; started++)
        if (pthread_create(&th[started], NULL, worker_main, &ws[started])) {
            rc = semd_err_set(err, SEMD_ENOMEM, "cannot start thread %u",
                              started);
            break;
        }
    for (uint32_t i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    if (rc == 0 && atomic_load(&r.failed))
        rc = semd_err_set(err, SEMD_ENOMEM, "out of memory in a worker");
    for (uint32_t i = 0; i < threads; i++) {
        free(ws[i].hot_buf);
        free(ws[i].hot_list);
        free(ws[i].hot_uses);
    }
    free(cut);
    free(ws);
    free(th);
    return rc;
}

/* ------------------------------------------------------------- the model */

static int
ensure_rows(struct semd_trainer *t, uint64_t rows)
{
    if (rows <= t->cap_rows)
        return 0;
    uint64_t cap = t->cap_rows ? t->cap_rows : 1024;
    while (cap < rows)
        cap *= 2;
    size_t bytes = (size_t)(cap * t->dim * sizeof(float));
    bytes = (bytes + 63) & ~(size_t)63;
    float *a = huge_alloc(bytes), *b = huge_alloc(bytes);
    float *k = realloc(t->keep, cap * sizeof *k);
    if (!a || !b || !k) {
        free(a);
        free(b);
        if (k)
            t->keep = k;
        return -1;
    }
    t->keep = k;
    size_t used = (size_t)(t->cap_rows * t->dim * sizeof(float));
    if (used) {
        memcpy(a, t->syn0, used);
        memcpy(b, t->syn1, used);
    }
    free(t->syn0);
    free(t->syn1);
    t->syn0 = a;
    t->syn1 = b;
    t->cap_rows = cap;
    return 0;
}

/* word2vec's random start, from a generator seeded by the word so a word's
 * first vector does not depend on the order words arrive in. */
static void
init_row(struct semd_trainer *t, uint32_t row)
{
    uint64_t r = t->o.seed ^ t->voc.hashes[row];
    float *v = t->syn0 + (uint64_t)row * t->dim;
    for (uint32_t i = 0; i < t->dim; i++) {
        r = r * 25214903917ull + 11;
        v[i] = ((float)(r & 0xFFFF) / 65536.0f - 0.5f) / (float)t->dim;
    }
    memset(t->syn1 + (uint64_t)row * t->dim, 0, t->dim * sizeof(float));
}

static void
set_keep(struct semd_trainer *t, uint32_t row)
{
    double c = (double)t->voc.counts[row];
    if (t->o.sample <= 0 || c <= 0) {
        t->keep[row] = 1.0f;
        return;
    }
    double st = t->o.sample * (double)t->total;
    t->keep[row] = (float)((sqrt(c / st) + 1) * st / c);
}

/* The sub-sampling thresholds and the noise distribution over the current
 * rows. */
static int
build_table(struct semd_trainer *t)
{
    uint32_t rows = t->voc.n;
    for (uint32_t i = 0; i < rows; i++)
        set_keep(t, i);
    if (rows > 0) {
        struct noise_col *nc;
        if (noise_build(t->voc.counts, rows, 0.75, &nc) != 0)
            return -1;
        free(t->noise);
        t->noise = nc;
    }
    t->table_rows = rows;
    t->table_total = t->total;
    return 0;
}

static int
maybe_rebuild_table(struct semd_trainer *t)
{
    uint64_t grown = t->voc.n - t->table_rows;
    if (t->noise && grown * 100 < t->table_rows &&
        (t->total - t->table_total) * 10 < t->table_total + 1)
        return 0;
    return build_table(t);
}

/* A new row for word with count, initialised; VOCAB_NONE on failure. */
static uint32_t
add_row(struct semd_trainer *t, const char *word, size_t len, uint64_t count,
        uint64_t h)
{
    if (t->voc.n >= MAX_ROWS || ensure_rows(t, t->voc.n + 1ull) != 0)
        return VOCAB_NONE;
    uint32_t row = vocab_add_h(&t->voc, word, len, count, h);
    if (row == VOCAB_NONE)
        return row;
    init_row(t, row);
    set_keep(t, row);
    pthread_mutex_lock(&t->stats_lock);
    t->st.rows = t->voc.n;
    t->st.new_rows = t->voc.n - t->init_rows;
    pthread_mutex_unlock(&t->stats_lock);
    return row;
}

void
semd_trainer_free(struct semd_trainer *t)
{
    if (!t)
        return;
    vocab_release(&t->voc);
    vocab_release(&t->cand);
    free(t->cand_row);
    free(t->syn0);
    free(t->syn1);
    free(t->keep);
    free(t->noise);
    free(t->ids);
    pthread_mutex_destroy(&t->stats_lock);
    free(t);
}

static int
check_opts(const struct semd_train_opts *o, struct semd_err *err)
{
    if (o->dim < 1 || o->dim > MODEL_MAX_DIMS)
        return semd_err_set(err, SEMD_EINVAL, "dim %u out of range (1..%u)",
                            o->dim, MODEL_MAX_DIMS);
    if (o->window < 1 || o->window > 1000)
        return semd_err_set(err, SEMD_EINVAL,
                            "window %u out of range (1..1000)", o->window);
    if (o->negative > 1000)
        return semd_err_set(err, SEMD_EINVAL,
                            "negative %u out of range (0..1000)", o->negative);
    if (!(o->sample >= 0 && o->sample < 1))
        return semd_err_set(err, SEMD_EINVAL,
                            "sample %g out of range [0, 1)", o->sample);
    if (!(o->alpha > 0 && o->alpha <= 10))
        return semd_err_set(err, SEMD_EINVAL,
                            "alpha %g out of range (0, 10]", o->alpha);
    if (o->min_count < 1)
        return semd_err_set(err, SEMD_EINVAL, "min-count must be >= 1");
    if (o->epochs < 1 || o->epochs > 10000)
        return semd_err_set(err, SEMD_EINVAL,
                            "epochs %u out of range (1..10000)", o->epochs);
    if (o->threads < 1 || o->threads > 1024)
        return semd_err_set(err, SEMD_EINVAL,
                            "threads %u out of range (1..1024)", o->threads);
    if (o->punct < SEMD_PUNCT_SPLIT || o->punct > SEMD_PUNCT_KEEP)
        return semd_err_set(err, SEMD_EINVAL, "unknown punctuation mode %d",
                            o->punct);
    if (o->ctx_init < SEMD_CTX_ZERO || o->ctx_init > SEMD_CTX_SCALED)
        return semd_err_set(err, SEMD_EINVAL,
                            "unknown context initialisation %d", o->ctx_init);
    return 0;
}

static int
load_init(struct semd_trainer *t, const struct semd_model *m,
          struct semd_err *err)
{
    struct semd_model_info in;
    semd_model_get_info(m, &in);
    if (in.rows > MAX_ROWS)
        return semd_err_set(err, SEMD_EINVAL, "init model has too many rows "
                            "(%llu)", (unsigned long long)in.rows);
    if (ensure_rows(t, in.rows ? in.rows : 1) != 0)
        return semd_err_set(err, SEMD_ENOMEM, "out of memory for %llu rows",
                            (unsigned long long)in.rows);
    int ranks = (in.flags & SEMD_MODEL_COUNTS_ARE_RANKS) != 0;
    const uint32_t dim = t->dim;
    double norm_sum = 0;
    for (uint64_t r = 0; r < in.rows; r++) {
        size_t len;
        const char *w = semd_model_word(m, r, &len);
        uint64_t c = semd_model_count(m, r);
        if (ranks)
            c = 100000000ull / (c ? c : 1);
        if (c == 0)
            c = 1;
        if (vocab_add(&t->voc, w, len, c) == VOCAB_NONE)
            return semd_err_set(err, SEMD_ENOMEM, "out of memory");
        t->total += c;
        memcpy(t->syn0 + r * dim, semd_model_row(m, r), dim * sizeof(float));
        norm_sum += semd_model_norms(m)[r];
    }
    float scale = 0;
    if (t->o.ctx_init == SEMD_CTX_SCALED && norm_sum > 0)
        scale = (float)((double)in.rows / norm_sum);
    for (uint64_t i = 0; i < in.rows * dim; i++)
        t->syn1[i] = scale * t->syn0[i];
    t->init_rows = in.rows;
    return 0;
}

int
semd_trainer_new(struct semd_trainer **out,
                 const struct semd_train_opts *opts,
                 const struct semd_model *init, struct semd_err *err)
{
    struct semd_train_opts o;
    if (opts)
        o = *opts;
    else
        semd_train_opts_init(&o);
    if (init)
        o.dim = semd_model_dims(init);
    int rc = check_opts(&o, err);
    if (rc != 0)
        return rc;
    struct semd_trainer *t = calloc(1, sizeof *t);
    if (!t)
        return semd_err_set(err, SEMD_ENOMEM, "out of memory");
    t->o = o;
    t->dim = o.dim;
    vocab_init(&t->voc);
    vocab_init(&t->cand);
    pthread_mutex_init(&t->stats_lock, NULL);
    for (int i = 0; i <= EXP_TABLE_SIZE; i++) {
        double x = ((double)i / EXP_TABLE_SIZE * 2 - 1) * MAX_EXP;
        double e = exp(x);
        t->exp_table[i] = (float)(e / (e + 1));
        t->nll_table[i] = (float)log1p(exp(-x));
    }
    __builtin_cpu_init();
    t->simd = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (getenv("SEMD_NO_SIMD"))
        t->simd = 0;
    if (init && (rc = load_init(t, init, err)) != 0)
        goto fail;
    if (init && build_table(t) != 0) {
        rc = semd_err_set(err, SEMD_ENOMEM, "out of memory");
        goto fail;
    }
    t->st.rows = t->voc.n;
    t->st.alpha = o.alpha;
    *out = t;
    return 0;
fail:
    semd_trainer_free(t);
    return rc;
}

/* ---------------------------------------------------- corpus file training */

struct counting {
    struct vocab cv; /* every distinct word of the corpus */
    uint32_t *stream;
    size_t n, cap;
    int failed;
};

static void
count_emit(void *arg, const char *word, size_t len)
{
    struct counting *c = arg;
    if (c->failed)
        return;
    uint32_t id = SENT_END;
    if (len) {
        uint64_t h = model_hash(word, len);
        id = vocab_find_h(&c->cv, word, len, h);
        if (id == VOCAB_NONE) {
            id = vocab_add_h(&c->cv, word, len, 0, h);
            if (id == VOCAB_NONE || id >= MAX_ROWS) {
                c->failed = 1;
                return;
            }
        }
        c->cv.counts[id]++;
    } else if (c->n == 0 || c->stream[c->n - 1] == SENT_END) {
        return;
    }
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 1u << 20;
        uint32_t *s = realloc(c->stream, cap * sizeof *s);
        if (!s) {
            c->failed = 1;
            return;
        }
        c->stream = s;
        c->cap = cap;
    }
    c->stream[c->n++] = id;
}

/* Rows or words ordered most frequent first, ties in index order. */
struct by_count {
    uint64_t count;
    uint32_t i;
};

static int
cmp_by_count(const void *a, const void *b)
{
    const struct by_count *x = a, *y = b;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

int
semd_trainer_train_file(struct semd_trainer *t, const char *path,
                        struct semd_err *err)
{
    if (!t || !path)
        return semd_err_set(err, SEMD_EINVAL, "no trainer or no corpus");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return semd_err_set(err, SEMD_EIO, "%s: cannot open: %s", path,
                            strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return semd_err_set(err, SEMD_EIO, "%s: cannot stat: %s", path,
                            strerror(e));
    }
    struct counting c = {0};
    vocab_init(&c.cv);
    uint32_t *remap = NULL;
    struct by_count *order = NULL;
    int rc = 0;
    if (st.st_size > 0) {
        void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE,
                         fd, 0);
        if (map == MAP_FAILED) {
            rc = semd_err_set(err, SEMD_EIO, "%s: cannot map: %s", path,
                              strerror(errno));
            close(fd);
            goto out;
        }
        madvise(map, (size_t)st.st_size, MADV_SEQUENTIAL);
        semd_train_split(&t->o, map, (size_t)st.st_size, count_emit, &c);
        munmap(map, (size_t)st.st_size);
    }
    close(fd);
    if (c.failed) {
        rc = semd_err_set(err, SEMD_ENOMEM,
                          "%s: out of memory counting words", path);
        goto out;
    }

    /* rows: words already known keep theirs; new words seen min_count
     * times join, most frequent first */
    remap = malloc((c.cv.n ? c.cv.n : 1) * sizeof *remap);
    order = malloc((c.cv.n ? c.cv.n : 1) * sizeof *order);
    if (!remap || !order) {
        rc = semd_err_set(err, SEMD_ENOMEM, "out of memory");
        goto out;
    }
    uint32_t n_new = 0;
    for (uint32_t i = 0; i < c.cv.n; i++) {
        uint32_t row = vocab_find_h(&t->voc, c.cv.words[i], c.cv.lens[i],
                                    c.cv.hashes[i]);
        remap[i] = row;
        if (row != VOCAB_NONE) {
            t->voc.counts[row] += c.cv.counts[i];
            t->total += c.cv.counts[i];
        } else if (c.cv.counts[i] >= t->o.min_count) {
            order[n_new++] = (struct by_count){c.cv.counts[i], i};
        }
    }
    qsort(order, n_new, sizeof *order, cmp_by_count);
    for (uint32_t k = 0; k < n_new; k++) {
        uint32_t i = order[k].i;
        t->total += c.cv.counts[i];
        remap[i] = add_row(t, c.cv.words[i], c.cv.lens[i], c.cv.counts[i],
                           c.cv.hashes[i]);
        if (remap[i] == VOCAB_NONE) {
            rc = semd_err_set(err, SEMD_ENOMEM, "out of memory adding rows");
            goto out;
        }
    }
    if (t->voc.n == 0) {
        rc = semd_err_set(err, SEMD_EINVAL,
                          "%s: no word occurs min-count (%llu) times", path,
                          (unsigned long long)t->o.min_count);
        goto out;
    }
    if (build_table(t) != 0) {
        rc = semd_err_set(err, SEMD_ENOMEM, "out of memory");
        goto out;
    }
    /* the stream of rows: words without a row take no window position */
    size_t m = 0;
    uint64_t words = 0;
    for (size_t i = 0; i < c.n; i++) {
        uint32_t id = c.stream[i];
        if (id == SENT_END) {
            if (m && c.stream[m - 1] != SENT_END)
                c.stream[m++] = SENT_END;
        } else if (remap[id] != VOCAB_NONE) {
            c.stream[m++] = remap[id];
            words++;
        }
    }
    vocab_release(&c.cv);
    free(remap);
    free(order);
    remap = NULL;
    order = NULL;
    /* the split ends every sentence, so the stream ends with SENT_END */
    if (m && c.stream[m - 1] != SENT_END && m < c.cap)
        c.stream[m++] = SENT_END;
    rc = run_stream(t, c.stream, m, words, t->o.epochs, err);
out:
    vocab_release(&c.cv);
    free(c.stream);
    free(remap);
    free(order);
    return rc;
}

/* ------------------------------------------------------ online training */

struct feeding {
    struct semd_trainer *t;
    int failed;
};

static int
push_id(struct semd_trainer *t, uint32_t id)
{
    if (t->n_ids == t->cap_ids) {
        size_t cap = t->cap_ids ? t->cap_ids * 2 : 4096;
        uint32_t *s = realloc(t->ids, cap * sizeof *s);
        if (!s)
            return -1;
        t->ids = s;
        t->cap_ids = cap;
    }
    t->ids[t->n_ids++] = id;
    return 0;
}

static void
feed_emit(void *arg, const char *word, size_t len)
{
    struct feeding *f = arg;
    struct semd_trainer *t = f->t;
    if (f->failed)
        return;
    if (!len) {
        if (t->n_ids && t->ids[t->n_ids - 1] != SENT_END &&
            push_id(t, SENT_END) != 0)
            f->failed = 1;
        return;
    }
    uint64_t h = model_hash(word, len);
    uint32_t id = vocab_find_h(&t->voc, word, len, h);
    if (id != VOCAB_NONE) {
        t->voc.counts[id]++;
        t->total++;
    } else {
        uint32_t ci = vocab_find_h(&t->cand, word, len, h);
        if (ci == VOCAB_NONE) {
            ci = vocab_add_h(&t->cand, word, len, 0, h);
            if (ci == VOCAB_NONE || ci >= CAND_BIT) {
                f->failed = 1;
                return;
            }
            if (ci >= t->cand_row_cap) {
                uint32_t cap = t->cand_row_cap ? t->cand_row_cap * 2 : 1024;
                uint32_t *cr = realloc(t->cand_row, cap * sizeof *cr);
                if (!cr) {
                    f->failed = 1;
                    return;
                }
                t->cand_row = cr;
                t->cand_row_cap = cap;
            }
            t->cand_row[ci] = VOCAB_NONE;
        }
        t->cand.counts[ci]++;
        if (t->cand.counts[ci] >= t->o.min_count &&
            t->cand_row[ci] == VOCAB_NONE) {
            t->total += t->cand.counts[ci];
            uint32_t row = add_row(t, word, len, t->cand.counts[ci], h);
            if (row == VOCAB_NONE) {
                f->failed = 1;
                return;
            }
            t->cand_row[ci] = row;
        }
        id = CAND_BIT | ci;
    }
    if (push_id(t, id) != 0)
        f->failed = 1;
}

int
semd_trainer_feed(struct semd_trainer *t, const char *text, size_t len,
                  struct semd_err *err)
{
    if (!t || (!text && len))
        return semd_err_set(err, SEMD_EINVAL, "no trainer or no text");
    struct feeding f = {t, 0};
    t->n_ids = 0;
    semd_train_split(&t->o, text, len, feed_emit, &f);
    if (f.failed)
        return semd_err_set(err, SEMD_ENOMEM, "out of memory reading text");
    /* occurrences before a word joined are trained too; words still below
     * min_count take no window position */
    size_t m = 0;
    uint64_t words = 0;
    for (size_t i = 0; i < t->n_ids; i++) {
        uint32_t id = t->ids[i];
        if (id != SENT_END && (id & CAND_BIT)) {
            id = t->cand_row[id & ~CAND_BIT];
            if (id == VOCAB_NONE)
                continue;
        }
        if (id == SENT_END && (m == 0 || t->ids[m - 1] == SENT_END))
            continue;
        t->ids[m++] = id;
        words += id != SENT_END;
    }
    if (m && t->ids[m - 1] != SENT_END && m < t->cap_ids)
        t->ids[m++] = SENT_END;
    if (t->voc.n == 0 || words == 0) {
        return 0;
    }
    if (maybe_rebuild_table(t) != 0)
        return semd_err_set(err, SEMD_ENOMEM, "out of memory");
    return run_stream(t, t->ids, m, words, 1, err);
}

/* -------------------------------------------------------------- queries */

void
semd_trainer_stats(struct semd_trainer *t, struct semd_train_stats *out)
{
    pthread_mutex_lock(&t->stats_lock);
    *out = t->st;
    pthread_mutex_unlock(&t->stats_lock);
}

uint64_t
semd_trainer_rows(const struct semd_trainer *t)
{
    return t->voc.n;
}

uint32_t
semd_trainer_dims(const struct semd_trainer *t)
{
    return t->dim;
}

const char *
semd_trainer_word(const struct semd_trainer *t, uint64_t row, size_t *len)
{
    if (row >= t->voc.n)
        return NULL;
    if (len)
        *len = t->voc.lens[row];
    return t->voc.words[row];
}

uint64_t
semd_trainer_count(const struct semd_trainer *t, uint64_t row)
{
    return row < t->voc.n ? t->voc.counts[row] : 0;
}

int
semd_trainer_lookup(const struct semd_trainer *t, const char *word,
                    size_t len, uint64_t *row)
{
    uint32_t r = vocab_find(&t->voc, word, len);
    if (r == VOCAB_NONE)
        return SEMD_ENOWORD;
    *row = r;
    return 0;
}

int
semd_trainer_copy_rows(const struct semd_trainer *t, uint64_t first,
                       uint64_t n, float *dst, struct semd_err *err)
{
    if (first > t->voc.n || n > t->voc.n - first)
        return semd_err_set(err, SEMD_EINVAL,
                            "rows %llu..%llu out of range (%u rows)",
                            (unsigned long long)first,
                            (unsigned long long)(first + n),
                            (unsigned)t->voc.n);
    memcpy(dst, t->syn0 + first * t->dim, n * t->dim * sizeof(float));
    return 0;
}

/* The order semd_trainer_write writes rows in: most frequent first, ties
 * in row order (so the same state gives the same order twice). NULL when
 * out of memory; free() it. */
static struct by_count *
write_order(const struct semd_trainer *t)
{
    struct by_count *order = malloc((t->voc.n ? t->voc.n : 1) *
                                    sizeof *order);
    if (!order)
        return NULL;
    for (uint32_t i = 0; i < t->voc.n; i++)
        order[i] = (struct by_count){t->voc.counts[i], i};
    qsort(order, t->voc.n, sizeof *order, cmp_by_count);
    return order;
}

int
semd_trainer_write(const struct semd_trainer *t, const char *path,
                   const struct semd_writer_opts *opts, struct semd_err *err)
{
    if (!t || !path)
        return semd_err_set(err, SEMD_EINVAL, "no trainer or no path");
    if (t->voc.n == 0)
        return semd_err_set(err, SEMD_EINVAL,
                            "%s: the vocabulary is empty", path);
    struct semd_writer_opts wo = {"semd-train", NULL, 0};
    if (opts) {
        wo = *opts;
        if (!wo.source_format)
            wo.source_format = "semd-train";
    }
    wo.flags &= ~SEMD_MODEL_COUNTS_ARE_RANKS;
    struct by_count *order = write_order(t);
    if (!order)
        return semd_err_set(err, SEMD_ENOMEM, "out of memory");
    struct semd_writer *w;
    int rc = semd_writer_open(&w, path, t->dim, &wo, err);
    if (rc != 0) {
        free(order);
        return rc;
    }
    for (uint32_t k = 0; k < t->voc.n; k++) {
        uint32_t r = order[k].i;
        rc = semd_writer_add(w, t->voc.words[r], t->voc.lens[r],
                             t->syn0 + (uint64_t)r * t->dim,
                             t->voc.counts[r], err);
        if (rc != 0) {
            semd_writer_abort(w);
            free(order);
            return rc;
        }
    }
    free(order);
    return semd_writer_finish(w, err);
}

/* ------------------------------------------------------ trainer state */

/*
 * The state file (semd_trainer_write_state), little-endian:
 *   "SEMDTRS1"  u32 dims  u32 model_checksum  u64 rows  u64 n_cand
 *   rows x dims f32: context vectors, in the model file's row order
 *   n_cand x (u32 len, u64 count, len bytes): words below min_count
 *   u32 CRC-32C of everything before it
 */
#define STATE_MAGIC "SEMDTRS1"
#define STATE_HEAD 32

static void
put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void
put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t
get32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint64_t
get64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* fwrite and a running CRC; sets *bad on a short write. */
static void
put(FILE *f, const void *p, size_t n, uint32_t *crc, int *bad)
{
    *crc = crc32c(*crc, p, n);
    if (!*bad && fwrite(p, 1, n, f) != n)
        *bad = 1;
}

int
semd_trainer_write_state(const struct semd_trainer *t, const char *path,
                         uint32_t model_checksum, struct semd_err *err)
{
    if (!t || !path)
        return semd_err_set(err, SEMD_EINVAL, "no trainer or no path");
    uint64_t n_cand = 0;
    for (uint32_t i = 0; i < t->cand.n; i++)
        n_cand += t->cand_row[i] == VOCAB_NONE;
    struct by_count *order = write_order(t);
    size_t tl = strlen(path) + 8;
    char *tmp = malloc(tl);
    if (!order || !tmp) {
        free(order);
        free(tmp);
        return semd_err_set(err, SEMD_ENOMEM, "out of memory");
    }
    snprintf(tmp, tl, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        int rc = semd_err_set(err, SEMD_EIO, "cannot create '%s': %s", tmp,
                              strerror(errno));
        free(order);
        free(tmp);
        return rc;
    }
    unsigned char h[STATE_HEAD];
    memcpy(h, STATE_MAGIC, 8);
    put32(h + 8, t->dim);
    put32(h + 12, model_checksum);
    put64(h + 16, t->voc.n);
    put64(h + 24, n_cand);
    uint32_t crc = 0;
    int bad = 0;
    put(f, h, sizeof h, &crc, &bad);
    for (uint32_t k = 0; k < t->voc.n; k++)
        put(f, t->syn1 + (uint64_t)order[k].i * t->dim,
            t->dim * sizeof(float), &crc, &bad);
    for (uint32_t i = 0; i < t->cand.n; i++) {
        if (t->cand_row[i] != VOCAB_NONE)
            continue; /* joined: its count is the row's */
        unsigned char e[12];
        put32(e, t->cand.lens[i]);
        put64(e + 4, t->cand.counts[i]);
        put(f, e, sizeof e, &crc, &bad);
        put(f, t->cand.words[i], t->cand.lens[i], &crc, &bad);
    }
    unsigned char c[4];
    put32(c, crc);
    put(f, c, sizeof c, &crc, &bad);
    free(order);
    if (bad || fflush(f) != 0 || fsync(fileno(f)) != 0) {
        int e = errno;
        fclose(f);
        unlink(tmp);
        int rc = semd_err_set(err, SEMD_EIO, "cannot write '%s': %s", tmp,
                              strerror(e));
        free(tmp);
        return rc;
    }
    fclose(f);
    /* the directory of path, for its fsync after the rename */
    char *dir = strdup(path);
    char *slash = dir ? strrchr(dir, '/') : NULL;
    if (slash)
        *slash = 0;
    int rc = 0;
    if (rename(tmp, path) != 0)
        rc = semd_err_set(err, SEMD_EIO, "cannot rename '%s': %s", tmp,
                          strerror(errno));
    else if (fio_fsync_dir(slash ? dir : ".") != 0)
        rc = semd_err_set(err, SEMD_EIO, "cannot sync the directory of "
                          "'%s': %s", path, strerror(errno));
    if (rc)
        unlink(tmp);
    free(dir);
    free(tmp);
    return rc;
}

/* A candidate word (below min_count) with count; -1 when out of memory. */
static int
add_cand(struct semd_trainer *t, const char *word, size_t len, uint64_t count)
{
    uint64_t h = model_hash(word, len);
    if (vocab_find_h(&t->voc, word, len, h) != VOCAB_NONE ||
        vocab_find_h(&t->cand, word, len, h) != VOCAB_NONE)
        return 0;
    uint32_t ci = vocab_add_h(&t->cand, word, len, count, h);
    if (ci == VOCAB_NONE || ci >= CAND_BIT)
        return -1;
    if (ci >= t->cand_row_cap) {
        uint32_t cap = t->cand_row_cap ? t->cand_row_cap * 2 : 1024;
        uint32_t *cr = realloc(t->cand_row, cap * sizeof *cr);
        if (!cr)
            return -1;
        t->cand_row = cr;
        t->cand_row_cap = cap;
    }
    t->cand_row[ci] = VOCAB_NONE;
    return 0;
}

int
semd_trainer_read_state(struct semd_trainer *t, const char *path,
                        uint32_t model_checksum, struct semd_err *err)
{
    if (!t || !path)
        return semd_err_set(err, SEMD_EINVAL, "no trainer or no path");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return semd_err_set(err, errno == ENOENT ? SEMD_ENOWORD : SEMD_EIO,
                            "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < STATE_HEAD + 4) {
        close(fd);
        return semd_err_set(err, SEMD_EFORMAT, "'%s' is too short to be "
                            "a trainer state", path);
    }
    size_t size = (size_t)st.st_size;
    const unsigned char *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return semd_err_set(err, SEMD_EIO, "cannot map '%s': %s", path,
                            strerror(errno));
    int rc = 0;
    uint64_t rows = get64(p + 16), n_cand = get64(p + 24);
    uint64_t vec = (uint64_t)t->dim * sizeof(float);
    if (memcmp(p, STATE_MAGIC, 8) != 0) {
        rc = semd_err_set(err, SEMD_EFORMAT, "'%s' is not a trainer state",
                          path);
    } else if (crc32c(0, p, size - 4) != get32(p + size - 4)) {
        rc = semd_err_set(err, SEMD_ECORRUPT, "'%s': checksum mismatch",
                          path);
    } else if (get32(p + 8) != t->dim || get32(p + 12) != model_checksum ||
               rows != t->voc.n || t->cand.n != 0 ||
               t->voc.n != t->init_rows) {
        rc = semd_err_set(err, SEMD_EINVAL, "'%s' belongs to another model "
                          "(checksum %08x, %llu rows) or the trainer has "
                          "trained already", path, get32(p + 12),
                          (unsigned long long)rows);
    } else if (rows > (size - STATE_HEAD - 4) / (vec ? vec : 1)) {
        rc = semd_err_set(err, SEMD_EFORMAT, "'%s' is truncated", path);
    }
    if (rc) {
        munmap((void *)p, size);
        return rc;
    }
    /* the candidates first: nothing changes until they all parse */
    size_t off = STATE_HEAD + (size_t)(rows * vec), end = size - 4;
    for (uint64_t i = 0; i < n_cand && !rc; i++) {
        uint32_t len = off + 12 <= end ? get32(p + off) : 0;
        if (off + 12 > end || len == 0 || len > SEMD_MAX_WORD ||
            len > end - off - 12)
            rc = semd_err_set(err, SEMD_EFORMAT, "'%s': candidate %llu is "
                              "malformed", path, (unsigned long long)i);
        else if (add_cand(t, (const char *)p + off + 12, len,
                          get64(p + off + 4)) != 0)
            rc = semd_err_set(err, SEMD_ENOMEM, "out of memory");
        off += 12 + (size_t)len;
    }
    if (rc) {
        vocab_release(&t->cand);
        vocab_init(&t->cand);
        munmap((void *)p, size);
        return rc;
    }
    /* rows of a trainer made from the model are in the file's order */
    memcpy(t->syn1, p + STATE_HEAD, (size_t)(rows * vec));
    munmap((void *)p, size);
    return 0;
}

/* tokenizer.c -- llama2.c tokenizer.bin: byte-pair merges by score, byte fallback.
 *
 * Lives in C because 32,000 entries as Python objects would cost megabytes the board
 * does not have: here the vocabulary is one arena of NUL-terminated strings plus a
 * sorted index of 4-byte ids (about 560 KB for the Llama 2 vocabulary).
 */
#define _POSIX_C_SOURCE 200809L
#include "sb_internal.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct sb_tokenizer {
    int vocab_size;
    int max_token_length;
    float *scores;
    uint32_t *offset;     /* start of each entry in arena */
    uint32_t *length;     /* its length in bytes */
    char *arena;
    int *sorted;          /* ids ordered by strcmp of their pieces */
    unsigned char bytes[512]; /* each byte value followed by NUL, for <0xXX> pieces */
};

static const char *piece(const struct sb_tokenizer *t, int id) { return t->arena + t->offset[id]; }

/* Bottom-up merge sort of ids by piece: C99's qsort takes no context, and a
 * global would make two tokenizers race. Stable, so equal pieces keep id order. */
static int sort_ids(const struct sb_tokenizer *t, int *ids, size_t n) {
    int *tmp = malloc(n * sizeof *tmp);
    if (!tmp) return -1;
    for (size_t w = 1; w < n; w *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            size_t a = lo, b = mid, k = lo;
            while (a < mid && b < hi)
                tmp[k++] = strcmp(piece(t, ids[b]), piece(t, ids[a])) < 0 ? ids[b++] : ids[a++];
            while (a < mid) tmp[k++] = ids[a++];
            while (b < hi) tmp[k++] = ids[b++];
        }
        memcpy(ids, tmp, n * sizeof *ids);
    }
    free(tmp);
    return 0;
}

void sb_tokenizer_close(sb_tokenizer *t) {
    if (!t) return;
    free(t->scores); free(t->offset); free(t->length); free(t->arena); free(t->sorted);
    free(t);
}

int sb_tokenizer_open(const char *path, int vocab_size, sb_tokenizer **out, sb_error *err) {
    if (err) { err->code = 0; err->message[0] = 0; }
    if (!out) return sb_fail(err, SB_ERR_ARG, "sb_tokenizer_open needs an output pointer");
    *out = NULL;
    if (!path || !*path) return sb_fail(err, SB_ERR_ARG, "no tokenizer path was given");
    if (vocab_size < 0 || vocab_size > SB_MAX_VOCAB) return sb_fail(err, SB_ERR_ARG, "vocab_size %d is out of range", vocab_size);
    struct stat st;
    if (stat(path, &st) != 0) {
        int e = errno;
        return sb_fail(err, SB_ERR_IO, "cannot open tokenizer file %s: %s", path, strerror(e));
    }
    if (S_ISDIR(st.st_mode)) return sb_fail(err, SB_ERR_IO, "%s is a directory, not a tokenizer file; give the path of tokenizer.bin", path);
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        return sb_fail(err, SB_ERR_IO, "cannot open tokenizer file %s: %s", path, strerror(e));
    }
    /* Read the whole file once: it is small (434 KB for Llama 2) and parsing from
     * memory lets every length be checked against what is really there. */
    long size = (long)st.st_size;
    unsigned char *buf = malloc(size > 0 ? (size_t)size : 1);
    if (!buf) { fclose(f); return sb_fail(err, SB_ERR_NOMEM, "out of memory reading %s", path); }
    size_t got = fread(buf, 1, (size_t)size, f);
    fclose(f);
    int rc = SB_OK;
    struct sb_tokenizer *t = NULL;
    if ((long)got != size) { rc = sb_fail(err, SB_ERR_IO, "could not read all of tokenizer file %s", path); goto done; }
    if (size < 4) { rc = sb_fail(err, SB_ERR_TRUNCATED, "tokenizer file %s is only %ld bytes: it is truncated or not a tokenizer", path, size); goto done; }
    int32_t maxlen;
    memcpy(&maxlen, buf, 4);
    if (maxlen <= 0 || maxlen > 4096) { rc = sb_fail(err, SB_ERR_FORMAT, "%s is not a llama2.c tokenizer.bin (its max_token_length field reads %d)", path, (int)maxlen); goto done; }

    /* First pass: count entries and check every length against the file. */
    size_t pos = 4, count = 0, text = 0;
    while (pos < (size_t)size) {
        if ((size_t)size - pos < 8) { rc = sb_fail(err, SB_ERR_TRUNCATED, "tokenizer file %s is truncated inside entry %zu; get a complete tokenizer.bin", path, count); goto done; }
        int32_t len;
        memcpy(&len, buf + pos + 4, 4);
        if (len < 0 || len > maxlen) { rc = sb_fail(err, SB_ERR_FORMAT, "%s is not a llama2.c tokenizer.bin: entry %zu has length %d (max_token_length is %d)", path, count, (int)len, (int)maxlen); goto done; }
        if ((size_t)size - pos - 8 < (size_t)len) { rc = sb_fail(err, SB_ERR_TRUNCATED, "tokenizer file %s is truncated inside entry %zu; get a complete tokenizer.bin", path, count); goto done; }
        pos += 8 + (size_t)len;
        text += (size_t)len + 1;
        count++;
        if (count > SB_MAX_VOCAB) { rc = sb_fail(err, SB_ERR_FORMAT, "%s has more than %d entries: not a tokenizer we can use", path, SB_MAX_VOCAB); goto done; }
    }
    if (count < 3) { rc = sb_fail(err, SB_ERR_FORMAT, "%s holds %zu tokens, too few for a llama2.c tokenizer", path, count); goto done; }
    if (vocab_size && (size_t)vocab_size != count) {
        rc = sb_fail(err, SB_ERR_MISMATCH, "tokenizer %s has %zu tokens but the model expects %d; use the tokenizer that came with this model (-z PATH)", path, count, vocab_size);
        goto done;
    }
    t = calloc(1, sizeof *t);
    if (!t) { rc = sb_fail(err, SB_ERR_NOMEM, "out of memory for the tokenizer"); goto done; }
    t->vocab_size = (int)count;
    t->max_token_length = maxlen;
    t->scores = malloc(count * sizeof *t->scores);
    t->offset = malloc(count * sizeof *t->offset);
    t->length = malloc(count * sizeof *t->length);
    t->sorted = malloc(count * sizeof *t->sorted);
    t->arena = malloc(text);
    if (!t->scores || !t->offset || !t->length || !t->sorted || !t->arena) { rc = sb_fail(err, SB_ERR_NOMEM, "out of memory for the tokenizer"); goto done; }
    pos = 4;
    size_t a = 0;
    for (size_t i = 0; i < count; i++) {
        int32_t len;
        memcpy(&t->scores[i], buf + pos, 4);
        memcpy(&len, buf + pos + 4, 4);
        memcpy(t->arena + a, buf + pos + 8, (size_t)len);
        t->arena[a + (size_t)len] = 0;
        t->offset[i] = (uint32_t)a;
        /* an embedded NUL would make the piece shorter than its record */
        t->length[i] = (uint32_t)strlen(t->arena + a);
        a += (size_t)len + 1;
        pos += 8 + (size_t)len;
        t->sorted[i] = (int)i;
    }
    for (int i = 0; i < 256; i++) { t->bytes[2 * i] = (unsigned char)i; t->bytes[2 * i + 1] = 0; }
    if (sort_ids(t, t->sorted, count)) rc = sb_fail(err, SB_ERR_NOMEM, "out of memory for the tokenizer");
done:
    free(buf);
    if (rc) { sb_tokenizer_close(t); return rc; }
    *out = t;
    return SB_OK;
}

int sb_tokenizer_vocab_size(const sb_tokenizer *t) { return t ? t->vocab_size : 0; }
int sb_tokenizer_max_token_length(const sb_tokenizer *t) { return t ? t->max_token_length : 0; }

const char *sb_token_piece(const sb_tokenizer *t, int token, size_t *len) {
    if (!t || token < 0 || token >= t->vocab_size) { if (len) *len = 0; return ""; }
    if (len) *len = t->length[token];
    return piece(t, token);
}

float sb_token_score(const sb_tokenizer *t, int token) {
    if (!t || token < 0 || token >= t->vocab_size) return 0.0f;
    return t->scores[token];
}

/* Lowest id among equal pieces, so lookups are deterministic. */
static int lookup(const struct sb_tokenizer *t, const char *s) {
    int lo = 0, hi = t->vocab_size - 1, found = -1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(s, piece(t, t->sorted[mid]));
        if (c == 0) { found = mid; hi = mid - 1; }
        else if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return found < 0 ? -1 : t->sorted[found];
}

/* id of the piece that is a's piece followed by b's, or -1 */
static int pair_id(const struct sb_tokenizer *t, char *buf, int a, int b) {
    size_t la = t->length[a], lb = t->length[b];
    if (la + lb > (size_t)t->max_token_length) return -1;
    memcpy(buf, piece(t, a), la);
    memcpy(buf + la, piece(t, b), lb);
    buf[la + lb] = 0;
    return lookup(t, buf);
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

const char *sb_decode(const sb_tokenizer *t, int prev, int token, size_t *len) {
    size_t n;
    const char *p = sb_token_piece(t, token, &n);
    /* after BOS, sentencepiece's leading space is dropped */
    if (prev == 1 && n && p[0] == ' ') { p++; n--; }
    /* "<0xXX>" stands for one raw byte */
    if (n == 6 && p[0] == '<' && p[1] == '0' && p[2] == 'x' && p[5] == '>') {
        int hi = hexval((unsigned char)p[3]), lo = hexval((unsigned char)p[4]);
        if (hi >= 0 && lo >= 0) { p = (const char *)&t->bytes[2 * (hi * 16 + lo)]; n = 1; }
    }
    if (len) *len = n;
    return p;
}

/* ------------------------------------------------------------------ BPE merges
 *
 * run.c's rule: while some adjacent pair's concatenation is in the vocabulary, merge
 * the pair whose merged piece scores highest (above -1e10), the leftmost one on ties.
 * run.c rescans every pair after every merge, O(n^2) lookups; here the tokens form a
 * linked list and the candidate merges sit in a binary heap ordered by (score, then
 * position), so a merge costs two lookups and O(log n) heap steps. A merge changes
 * only the pairs either side of it: stamp[i] counts changes to the pair starting at
 * node i, and a heap entry whose stamp is out of date is dropped when it surfaces.
 * Positions are the nodes' original indices, which keep list order, so "smallest
 * position" is exactly run.c's "leftmost". */

typedef struct { float score; int at, id; unsigned stamp; } cand;

typedef struct {
    const struct sb_tokenizer *t;
    int *tok, *next, *prev;
    unsigned *stamp;
    cand *heap;
    int size;
    char *buf;
    long work;             /* lookups + heap steps, read by tests (sb_encode_counted) */
} merger;

static int before(const cand *a, const cand *b) {
    return a->score > b->score || (a->score == b->score && a->at < b->at);
}

static void heap_push(merger *g, cand c) {
    int i = g->size++;
    while (i > 0) {
        int up = (i - 1) / 2;
        g->work++;
        if (!before(&c, &g->heap[up])) break;
        g->heap[i] = g->heap[up];
        i = up;
    }
    g->heap[i] = c;
}

static cand heap_pop(merger *g) {
    cand top = g->heap[0], last = g->heap[--g->size];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= g->size) break;
        if (c + 1 < g->size && before(&g->heap[c + 1], &g->heap[c])) c++;
        g->work++;
        if (!before(&g->heap[c], &last)) break;
        g->heap[i] = g->heap[c];
        i = c;
    }
    if (g->size) g->heap[i] = last;
    return top;
}

/* Offers the pair that starts at node i, if it merges into a piece run.c would take. */
static void offer(merger *g, int i) {
    int r = g->next[i];
    if (r < 0) return;
    g->work++;
    int id = pair_id(g->t, g->buf, g->tok[i], g->tok[r]);
    if (id < 0 || !(g->t->scores[id] > -1e10f)) return;
    cand c = {g->t->scores[id], i, id, g->stamp[i]};
    heap_push(g, c);
}

static int merge_pairs(const struct sb_tokenizer *t, int *tokens, int *n_io, char *buf, long *work) {
    int n = *n_io;
    if (n < 2) return 0;
    merger g = {t, tokens, malloc((size_t)n * sizeof(int)), malloc((size_t)n * sizeof(int)),
                calloc((size_t)n, sizeof(unsigned)), malloc((size_t)n * 3 * sizeof(cand)), 0, buf, 0};
    int rc = (!g.next || !g.prev || !g.stamp || !g.heap) ? -1 : 0;
    if (!rc) {
        for (int i = 0; i < n; i++) { g.next[i] = i + 1 < n ? i + 1 : -1; g.prev[i] = i - 1; }
        for (int i = 0; i + 1 < n; i++) offer(&g, i);
        int left = n;
        while (g.size) {
            cand c = heap_pop(&g);
            int i = c.at;
            if (g.stamp[i] != c.stamp) continue;   /* the pair changed since it was offered */
            int r = g.next[i];
            tokens[i] = c.id;
            g.next[i] = g.next[r];
            if (g.next[r] >= 0) g.prev[g.next[r]] = i;
            g.stamp[r]++;                           /* r is gone: its own pair with it */
            g.stamp[i]++;
            left--;
            offer(&g, i);
            if (g.prev[i] >= 0) { g.stamp[g.prev[i]]++; offer(&g, g.prev[i]); }
        }
        /* node 0 never merges away (only right-hand nodes do), so the list starts there */
        int k = 0;
        for (int i = 0; i >= 0; i = g.next[i]) tokens[k++] = tokens[i];
        *n_io = left;
    }
    free(g.next); free(g.prev); free(g.stamp); free(g.heap);
    if (work) *work = g.work;
    return rc;
}

/* Strict UTF-8 check (no overlongs, no surrogates, nothing past U+10FFFF). */
static size_t utf8_invalid_at(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k; unsigned min;
        if (c < 0x80) { i++; continue; }
        else if ((c & 0xE0) == 0xC0) { k = 1; min = 0x80; c &= 0x1F; }
        else if ((c & 0xF0) == 0xE0) { k = 2; min = 0x800; c &= 0x0F; }
        else if ((c & 0xF8) == 0xF0) { k = 3; min = 0x10000; c &= 0x07; }
        else return i;
        if (n - i <= k) return i;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return i;
            c = (c << 6) | (s[i + j] & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return i;
        i += k + 1;
    }
    return (size_t)-1;
}

int sb_encode(const sb_tokenizer *t, const char *text, size_t len, int bos, int eos,
              int *tokens, int max_tokens, int *n_tokens, sb_error *err) {
    return sb_encode_counted(t, text, len, bos, eos, tokens, max_tokens, n_tokens, err, NULL);
}

int sb_encode_counted(const sb_tokenizer *t, const char *text, size_t len, int bos, int eos,
                      int *tokens, int max_tokens, int *n_tokens, sb_error *err, long *work) {
    if (err) { err->code = 0; err->message[0] = 0; }
    if (!t || !tokens || !n_tokens) return sb_fail(err, SB_ERR_ARG, "sb_encode needs a tokenizer and output buffers");
    if (!text) { text = ""; len = 0; }
    *n_tokens = 0;
    if (len > (size_t)1 << 24) return sb_fail(err, SB_ERR_PROMPT, "the prompt is %zu bytes long; keep it under 16 MB", len);
    if ((size_t)max_tokens < len + 3) return sb_fail(err, SB_ERR_ARG, "sb_encode needs room for %zu tokens", len + 3);
    size_t bad = utf8_invalid_at((const unsigned char *)text, len);
    if (bad != (size_t)-1) return sb_fail(err, SB_ERR_PROMPT, "the prompt is not valid UTF-8 (bad byte 0x%02X at offset %zu); type it again or fix its encoding", (unsigned char)text[bad], bad);
    for (size_t i = 0; i < len; i++)
        if (text[i] == 0) return sb_fail(err, SB_ERR_PROMPT, "the prompt contains a NUL byte at offset %zu", i);

    /* concatenation buffer: two pieces and a NUL */
    char *buf = malloc((size_t)t->max_token_length * 2 + 3);
    if (!buf) return sb_fail(err, SB_ERR_NOMEM, "out of memory encoding the prompt");
    int n = 0;
    if (bos) tokens[n++] = 1;
    if (len > 0) {
        /* sentencepiece's add_dummy_prefix: the text behaves as if it began with a space */
        int sp = lookup(t, " ");
        if (sp >= 0) tokens[n++] = sp;
    }
    /* one token per code point, or its bytes (+3: ids 3..258 are <0x00>..<0xFF>) */
    size_t i = 0;
    while (i < len) {
        size_t k = 1;
        while (i + k < len && ((unsigned char)text[i + k] & 0xC0) == 0x80 && k < 4) k++;
        memcpy(buf, text + i, k);
        buf[k] = 0;
        int id = lookup(t, buf);
        if (id >= 0) tokens[n++] = id;
        else for (size_t j = 0; j < k; j++) {
            int b = (unsigned char)buf[j] + 3;
            tokens[n++] = b < t->vocab_size ? b : 0;
        }
        i += k;
    }
    long w = 0;
    int rc = merge_pairs(t, tokens, &n, buf, &w);
    free(buf);
    if (rc) return sb_fail(err, SB_ERR_NOMEM, "out of memory encoding the prompt");
    if (work) *work = w;
    if (eos) tokens[n++] = 2;
    *n_tokens = n;
    return SB_OK;
}

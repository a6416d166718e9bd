/* model.c -- opening and mapping model files, and picking the loader by magic number
 * (format_f32.c, format_llama2c_q8.c, format_sbq.c).
 *
 * The file is mapped read-only and the tensors point into the mapping: on a 64 MB
 * board the page cache is the only copy of the weights we can afford. Every size
 * read from the file is checked against the mapping before anything is dereferenced.
 */
#define _POSIX_C_SOURCE 200809L
#include "formats.h"
#include "guard.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Picks the loader by the file's first four bytes; the legacy fp32 format has none. */
static int load(struct sb_model *m, const char *path, uint32_t *magic, sb_error *err) {
    if (m->map_len >= 4) memcpy(magic, m->map, 4);
    if (*magic == SB_LLAMA2C_Q8_MAGIC) return sb_load_q8_llama2c(m, err);
    if (*magic == SB_SBQ_MAGIC) return sb_load_sbq(m, err);
    return sb_load_f32(m, path, err);
}

int sb_model_open(const char *path, sb_model **out, sb_error *err) {
    if (err) { err->code = 0; err->message[0] = 0; }
    if (!out) return sb_fail(err, SB_ERR_ARG, "sb_model_open needs an output pointer");
    *out = NULL;
    if (!path || !*path) return sb_fail(err, SB_ERR_ARG, "no model path was given");
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        int e = errno;
        return sb_fail(err, SB_ERR_IO, "cannot open model file %s: %s", path, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno; close(fd);
        return sb_fail(err, SB_ERR_IO, "cannot read model file %s: %s", path, strerror(e));
    }
    if (S_ISDIR(st.st_mode)) { close(fd); return sb_fail(err, SB_ERR_IO, "%s is a directory, not a model file; give the path of a .bin checkpoint", path); }
    if (!S_ISREG(st.st_mode)) { close(fd); return sb_fail(err, SB_ERR_IO, "%s is not a regular file; give the path of a .bin checkpoint", path); }
    if (st.st_size == 0) { close(fd); return sb_fail(err, SB_ERR_TRUNCATED, "%s is empty; download the model again", path); }
    struct sb_model *m = calloc(1, sizeof *m);
    if (!m) { close(fd); return sb_fail(err, SB_ERR_NOMEM, "out of memory opening %s", path); }
    m->map_len = (size_t)st.st_size;
    m->map = mmap(NULL, m->map_len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m->map == MAP_FAILED) {
        int e = errno; free(m);
        return sb_fail(err, SB_ERR_IO, "cannot map model file %s: %s", path, strerror(e));
    }
    /* the file may shrink between fstat and the reads (guard.h); m holds everything
     * the loaders allocate, so closing it cleans up after a fault too */
    sb_guard g;
    if (sigsetjmp(g.jb, 0)) {
        sb_guard_fault(&g);
        sb_model_close(m);
        return sb_fail(err, SB_ERR_MODEL_CHANGED, "%s changed or was truncated while it was being opened; try again", path);
    }
    sb_guard_enter(&g);
    uint32_t magic = 0;
    int rc = load(m, path, &magic, err);
    sb_guard_leave(&g);
    if (rc) {
        if (err && (magic == SB_LLAMA2C_Q8_MAGIC || magic == SB_SBQ_MAGIC)) {
            char detail[sizeof err->message];
            memcpy(detail, err->message, sizeof detail);
            sb_fail(err, rc, "%s: %s", path, detail);
        }
        sb_model_close(m);
        return rc;
    }
    m->cfg.file_bytes = (int64_t)m->map_len;
    /* bytes one step reads: every layer matrix, the classifier, one embedding row */
    /* with a shared classifier the embedding row is one of the rows the classifier reads */
    int64_t b = sb_tensor_bytes(&m->wcls) + (m->cfg.shared_classifier ? 0 : sb_tensor_bytes(&m->tok) / m->cfg.vocab_size);
    for (int l = 0; l < m->cfg.n_layers; l++)
        b += sb_tensor_bytes(&m->wq[l]) + sb_tensor_bytes(&m->wk[l]) + sb_tensor_bytes(&m->wv[l]) + sb_tensor_bytes(&m->wo[l])
           + sb_tensor_bytes(&m->w1[l]) + sb_tensor_bytes(&m->w2[l]) + sb_tensor_bytes(&m->w3[l]);
    b += ((int64_t)m->cfg.n_layers * 2 + 1) * m->cfg.dim * 4;
    m->cfg.weight_bytes_per_token = b;
    *out = m;
    return SB_OK;
}

void sb_model_close(sb_model *m) {
    if (!m) return;
    if (m->map && m->map != MAP_FAILED) munmap(m->map, m->map_len);
    free(m->owned);
    sb_free_copies(m);
    free(m);
}

const sb_config *sb_model_config(const sb_model *m) { return m ? &m->cfg : NULL; }

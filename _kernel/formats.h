/* formats.h -- the model-file layer: one loader per file format (format_*.c), the
 * dispatch in model.c, and the helpers they share (weights.c), which call nothing
 * above them. Kernel-internal, like sb_internal.h. */
#ifndef SB_FORMATS_H
#define SB_FORMATS_H
#include "sb_internal.h"

#define SB_LLAMA2C_Q8_MAGIC 0x616b3432u  /* "ak42": llama2.c export.py --version >= 1 */
#define SB_SBQ_MAGIC 0x31514253u         /* "SBQ1" little-endian: storybot's own files */

/* Loaders, called by model.c once the file is mapped (m->map, m->map_len). Each checks
 * every size it reads against the mapping and fills m->cfg and the tensors. */
int sb_load_f32(struct sb_model *m, const char *path, sb_error *err);   /* legacy, no magic */
int sb_load_q8_llama2c(struct sb_model *m, sb_error *err);
int sb_load_sbq(struct sb_model *m, sb_error *err);

/* weights.c */
int sb_validate_shape(const sb_config *c, sb_error *err);
int sb_model_layer_arrays(struct sb_model *m, sb_error *err);
/* Bytes of n weights of a matrix type in groups of gs (values, then one fp32 scale per group). */
int64_t sb_weight_bytes(int type, int64_t n, int gs);
/* Bytes of a whole tensor as the forward step reads it. */
int64_t sb_tensor_bytes(const sb_tensor *t);
sb_tensor sb_f32_tensor(const float *p, int rows, int cols);
/* A heap copy of n floats that may sit at any byte offset in the mapping, kept in
 * m->copies and freed with the model: float loads must be aligned on strict-alignment
 * CPUs, and llama2.c's int8 files put scales wherever the values end. */
const float *sb_aligned_floats(struct sb_model *m, const void *p, size_t n, sb_error *err);
void sb_free_copies(struct sb_model *m);

#endif

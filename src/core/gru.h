/* gru.h: the multi-layer GRU of DRLMemNet (PyTorch nn.GRU, batch_first,
 * h0 = 0 or given, optional dropout between layers), forward and backward through time.
 *
 * Gate rows of every weight and bias are (r, z, n), as PyTorch:
 *   r  = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
 *   z  = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
 *   n  = tanh(W_in x + b_in + r * (W_hn h + b_hn))   (b_hn inside the product)
 *   h' = (1 - z) * n + z * h
 * Layer l reads layer l-1's outputs (I_0 = In, I_l = H after). The input
 * projections of a whole layer are one sgemm over all B*T rows; the
 * recurrence does one small-M product per timestep (vmath.h's packed kernel,
 * W_hh packed once per layer) on strided rows of the batch-first buffers,
 * so nothing is copied or allocated inside the time loop. The
 * caller owns the cache (what backward needs) and the backward scratch, sized
 * by dm_gru_cache_numel / dm_gru_scratch_numel, so both can live in an
 * activation arena. Backward runs through the whole sequence and ADDS into
 * every gradient (parameters and din). */
#ifndef DM_GRU_H
#define DM_GRU_H

#include "core/common.h"

#define DM_GRU_MAX_LAYERS 16

typedef struct dm_gru_dims {
    size_t B, T; /* batch, time */
    size_t In;   /* input features of layer 0 ("I" is a macro of <complex.h>, via cblas.h) */
    size_t H;    /* hidden size */
    size_t L;    /* layers, 1..DM_GRU_MAX_LAYERS */
} dm_gru_dims;

/* Per-layer parameter pointers, I_l = (l == 0 ? In : H). */
typedef struct dm_gru_params {
    const float *w_ih[DM_GRU_MAX_LAYERS]; /* (3H, I_l) */
    const float *w_hh[DM_GRU_MAX_LAYERS]; /* (3H, H) */
    const float *b_ih[DM_GRU_MAX_LAYERS]; /* (3H) */
    const float *b_hh[DM_GRU_MAX_LAYERS]; /* (3H) */
} dm_gru_params;

/* Per-layer gradient pointers, same shapes; backward adds into them. */
typedef struct dm_gru_grads {
    float *w_ih[DM_GRU_MAX_LAYERS]; /* (3H, I_l) acc */
    float *w_hh[DM_GRU_MAX_LAYERS]; /* (3H, H) acc */
    float *b_ih[DM_GRU_MAX_LAYERS]; /* (3H) acc */
    float *b_hh[DM_GRU_MAX_LAYERS]; /* (3H) acc */
} dm_gru_grads;

/* 0, or -1 naming the bad field (a zero size, L outside 1..16, a product
 * that overflows). The kernels below assume dims passed this check. */
int dm_gru_dims_check(const dm_gru_dims *d, dm_error *err);
/* Number of weights of layer l's w_ih (3H * I_l). */
size_t dm_gru_w_ih_numel(const dm_gru_dims *d, size_t l);

/* Floats of the forward cache: per layer, gates (B,T,3H) holding r, z, n
 * after their nonlinearities, hg (B,T,3H) = W_hh h_{t-1} + b_hh, and the
 * layer's outputs h (B,T,H); L * B*T*7H in all. */
size_t dm_gru_cache_numel(const dm_gru_dims *d);
/* Floats of the backward scratch: two (B,T,3H) gate gradients, one (B,T,H)
 * output gradient for the layer below, one (B,H) carried dh, and one packed
 * W_hh (dm_vgemm_packed_numel(3H, H)). */
size_t dm_gru_scratch_numel(const dm_gru_dims *d);

/* Runs all layers; writes out and fills cache. out doubles as work space
 * until the end (it must not overlap cache). */
void dm_gru_forward(float *out /* (B,T,H) */, float *cache /* (cache_numel) */,
                    const float *in /* (B,T,In) */, const dm_gru_params *p, const dm_gru_dims *d);

/* Backpropagates dout through time and layers using the cache of the
 * matching forward (same in, same params). din may be NULL (no input
 * gradient); every pointer in g must be set. scratch is overwritten. */
void dm_gru_backward(float *din /* (B,T,In) acc, or NULL */, const dm_gru_grads *g,
                     const float *dout /* (B,T,H) */, const float *cache /* (cache_numel) */,
                     const float *in /* (B,T,In) */, const dm_gru_params *p, const dm_gru_dims *d,
                     float *scratch /* (scratch_numel) */);

/* What a run may add to the plain forward (all NULL: h0 = 0, no dropout
 * between layers): an initial state (a carried one, truncated BPTT; it is
 * a constant, so backward gives it no gradient) and a dropout mask on the
 * input of every layer above the first. The masked inputs are kept in
 * layer_in, where backward reads them. */
typedef struct dm_rnn_opts {
    const float *h0;         /* (L,B,H) initial hidden state, or NULL (zeros) */
    const float *c0;         /* (L,B,H) LSTM initial cell state, or NULL (zeros) */
    const float *layer_mask; /* (L-1,B,T,H) scaled keep values on layer l's input, l >= 1, or NULL */
    float *layer_in;         /* (L-1,B,T,H) the masked inputs; set whenever layer_mask is */
} dm_rnn_opts;

/* dm_gru_forward / dm_gru_backward with opts (NULL: the plain ones). The
 * backward must get the forward's opts. */
void dm_gru_forward_opts(float *out /* (B,T,H) */, float *cache, const float *in /* (B,T,In) */,
                         const dm_gru_params *p, const dm_gru_dims *d, const dm_rnn_opts *o);
void dm_gru_backward_opts(float *din /* (B,T,In) acc, or NULL */, const dm_gru_grads *g,
                          const float *dout /* (B,T,H) */, const float *cache,
                          const float *in /* (B,T,In) */, const dm_gru_params *p,
                          const dm_gru_dims *d, float *scratch, const dm_rnn_opts *o);
/* Layer l's input as the forward saw it: in, the layer below's outputs, or
 * their masked copy in o->layer_in. */
const float *dm_rnn_layer_input(const float *in, const float *below /* (B,T,H) */,
                                const dm_gru_dims *d, size_t l, const dm_rnn_opts *o);

/* For the GRU and LSTM parts: the run's options of a cell part p (the
 * run's h0 and c0; in training, with p->cfg.p > 0 and more than one layer,
 * the layer masks in the part's activations k (mask) and k+1 (masked
 * inputs), drawn from the run's generator when draw is set: the forward
 * draws, the backward reuses). Returns o, or NULL when there is nothing. */
struct dm_part;
struct dm_part_run;
const dm_rnn_opts *dm_rnn_part_opts(const struct dm_part *p, const struct dm_part_run *r, int k,
                                    int draw, dm_rnn_opts *o);
/* Whether a cell part keeps layer-dropout activations (cfg.p > 0, L > 1). */
int dm_rnn_part_has_layer_dropout(const struct dm_part *p);

/* Layer l's outputs inside the cache (layer L-1's equal `out`). */
const float *dm_gru_layer_output(const float *cache, const dm_gru_dims *d, size_t l) /* (B,T,H) */;
/* PyTorch's h_n: the last timestep of every layer. */
void dm_gru_final_hidden(float *h_n /* (L,B,H) */, const float *cache, const dm_gru_dims *d);

#endif

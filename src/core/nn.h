/* nn.h: the stateless layers of DRLMemNet (Linear, GELU, Embedding, Dropout,
 * log-softmax, cross-entropy) and the parameter initialisers.
 *
 * Each layer is a pair of plain functions over caller-owned buffers, in
 * llm.c's shape: forward writes (overwrites) its output; backward ADDS (+=)
 * into every gradient it writes, input gradients included, so that a caller
 * zeroes gradients once per step and several consumers of one activation can
 * each add their share. A gradient pointer documented "or NULL" is skipped
 * when NULL (e.g. no input gradient for the first layer). Rows are the
 * flattened leading dims: a (B,T,I) activation is passed as N = B*T rows.
 * Semantics follow PyTorch exactly (the reference README's table). Kernels
 * that cannot fail return void and document their preconditions; those that
 * look at data that can be wrong (token ids, targets) return 0 / -1 and fill
 * a dm_error naming the bad value. */
#ifndef DM_NN_H
#define DM_NN_H

#include "core/common.h"
#include "core/rng.h"

/* ---- Linear: out = in @ weight^T + bias (weight is (OC,C), as PyTorch) ---- */

void dm_linear_forward(float *out /* (N,OC) */, const float *in /* (N,C) */,
                       const float *weight /* (OC,C) */, const float *bias /* (OC) or NULL */,
                       size_t N, size_t C, size_t OC);
/* din += dout @ weight; dweight += dout^T @ in; dbias += column sums of dout.
 * Any of din, dweight, dbias may be NULL. */
void dm_linear_backward(float *din /* (N,C) acc, or NULL */, float *dweight /* (OC,C) acc, or NULL */,
                        float *dbias /* (OC) acc, or NULL */, const float *dout /* (N,OC) */,
                        const float *in /* (N,C) */, const float *weight /* (OC,C) */,
                        size_t N, size_t C, size_t OC);

/* ---- GELU, the exact form 0.5 x (1 + erf(x / sqrt 2)) ---- */

/* out may equal in (in place). */
void dm_gelu_forward(float *out /* (n) */, const float *in /* (n) */, size_t n);
/* din += dout * (Phi(x) + x phi(x)); needs the pre-activation `in`. */
void dm_gelu_backward(float *din /* (n) acc */, const float *dout /* (n) */,
                      const float *in /* (n) pre-activation */, size_t n);

/* ---- Embedding: out[i] = weight[ids[i]] ---- */

/* Fails (-1) when an id is outside [0, V); the message names the position,
 * the id and V ("embedding: token id 20 at position 3 is out of range for
 * vocabulary size 20"). out is left partly written on failure. */
int dm_embedding_forward(float *out /* (N,E) */, const int32_t *ids /* (N) */,
                         const float *weight /* (V,E) */, size_t N, size_t V, size_t E,
                         dm_error *err);
/* dweight[ids[i]] += dout[i]; ids must have passed dm_embedding_forward. */
void dm_embedding_backward(float *dweight /* (V,E) acc */, const float *dout /* (N,E) */,
                           const int32_t *ids /* (N) */, size_t N, size_t E);

/* ---- Dropout (inverted, as PyTorch) ---- */

/* Training: each element is kept with probability 1-p and scaled by 1/(1-p);
 * mask[i] is 0 or 1/(1-p) and out = in * mask. One dm_rng_uniform draw per
 * element, in order: dropped when the draw is < p. p >= 1 drops everything.
 * Eval (training == 0) or p <= 0: out = in, mask all 1, no draw. rng may be
 * NULL in eval. out may equal in. Precondition: 0 <= p <= 1 (the binding
 * checks it). */
void dm_dropout_forward(float *out /* (n) */, float *mask /* (n) */, const float *in /* (n) */,
                        size_t n, float p, int training, dm_rng *rng);
/* Draws a dropout mask for (B,T) rows of W features: each value keep =
 * 1/(1-p) with probability 1-p, else 0 (draws as dm_dropout_forward's).
 * variational != 0 draws one row per sequence (B*W draws) and repeats it
 * at every time step, so a sequence loses the same units all along (Gal &
 * Ghahramani; AWD-LSTM's locked dropout). p in [0,1]. */
void dm_dropout_mask(float *mask /* (B,T,W) */, size_t B, size_t T, size_t W, float p,
                     int variational, dm_rng *rng);
/* din += dout * mask. */
void dm_dropout_backward(float *din /* (n) acc */, const float *dout /* (n) */,
                         const float *mask /* (n) */, size_t n);

/* ---- log-softmax and cross-entropy over the last dim ---- */

/* out[i] = in[i] - max - log(sum exp(in - max)) per row; out may equal in. */
void dm_log_softmax_forward(float *out /* (N,V) */, const float *in /* (N,V) */, size_t N, size_t V);

/* Mean negative log-likelihood of targets under softmax(logits), computed
 * stably (max-shifted log-sum-exp, in double) for any logit size.
 * Positions whose target == ignore_index are not counted (ignore_index < 0:
 * none ignored). *loss = sum of counted NLL / count; *count = number counted.
 * When dlogits is not NULL it gets += dloss * (softmax(logits) - onehot) /
 * count at counted positions (0 elsewhere): dloss scales the gradient, e.g.
 * 1 or 1/accumulation_steps. PyTorch's CrossEntropyLoss(log_softmax(x)) has
 * the same value and gradient, because log_softmax is idempotent.
 * All targets ignored: *loss = NaN, *count = 0, dlogits untouched, returns 0
 * (PyTorch also gives NaN). A target outside [0, V) that is not ignore_index
 * fails (-1) naming the position, the target and V; nothing is written. */
int dm_cross_entropy(float *loss, size_t *count, float *dlogits /* (N,V) acc, or NULL */,
                     const float *logits /* (N,V) */, const int32_t *targets /* (N) */,
                     size_t N, size_t V, int32_t ignore_index, float dloss, dm_error *err);

/* The output layer's loss and backward in one pass over the rows (each
 * row of V floats stays in cache while it is used): the mean cross-entropy
 * of logits, exactly as dm_cross_entropy computes it, and the gradient
 * with respect to the output layer's pre-activations, OVERWRITTEN into dpre:
 * with pre (logits = GELU(pre)), dpre = dlogits * GELU'(pre); with pre
 * NULL (logits are the pre-activations), dpre = dlogits; dlogits as
 * dm_cross_entropy adds it into a zeroed buffer (ignored rows 0). The bits
 * are those of dm_cross_entropy into a zeroed buffer followed by
 * dm_vgelu_backward(dpre, dlogits, pre, N*V, 0); the fused form skips the
 * two (N,V) buffers and three passes over them. dpre may equal pre (the
 * gradient replaces the pre-activations row by row) but no other overlap.
 * Fails (-1) as dm_cross_entropy does, writing nothing, or when the two
 * row buffers (2V floats) cannot be allocated. */
int dm_cross_entropy_pre(float *loss, size_t *count, float *dpre /* (N,V) */,
                         const float *logits /* (N,V) */, const float *pre /* (N,V) or NULL */,
                         const int32_t *targets /* (N) */, size_t N, size_t V,
                         int32_t ignore_index, float dloss, dm_error *err);

/* ---- parameter initialisers (draws from rng in index order) ---- */

/* x[i] = U(-bound, bound) = (2u - 1) * bound, u = dm_rng_uniform. */
void dm_init_uniform(float *x /* (n) */, size_t n, float bound, dm_rng *rng);
/* x[i] = std * dm_rng_normal. */
void dm_init_normal(float *x /* (n) */, size_t n, float std, dm_rng *rng);
void dm_init_fill(float *x /* (n) */, size_t n, float value);
/* sqrt(6 / fan_in): kaiming_uniform with gain sqrt(2) (the seed's fc_query,
 * fc1, fc_output weights and the memory keys/values with fan_in = D). */
float dm_init_kaiming_bound(size_t fan_in);
/* 1 / sqrt(fan_in): PyTorch's default Linear init for weight and bias, and
 * the GRU's U(+-1/sqrt(H)) with fan_in = H. */
float dm_init_default_bound(size_t fan_in);
/* The seed's embedding init is dm_init_normal(w, V*E, 0.1f, rng). */
#define DM_INIT_EMBEDDING_STD 0.1f

#endif

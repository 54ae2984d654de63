/* lstm.h: the multi-layer LSTM cell (PyTorch nn.LSTM, batch_first, h0 = c0
 * = 0 or given, optional dropout between layers, no projection), forward and backward
 * through time, and its part (part.h, kind "lstm") for `cell: lstm`.
 *
 * Gate rows of every weight and bias are (i, f, g, o), as PyTorch:
 *   i = sigmoid(W_ii x + b_ii + W_hi h + b_hi)     f likewise
 *   g = tanh(W_ig x + b_ig + W_hg h + b_hg)        o = sigmoid(...)
 *   c' = f * c + i * g,   h' = o * tanh(c')
 * with the parameters named as PyTorch's state_dict (weight_ih_l<k> (4H,
 * I_l), weight_hh_l<k> (4H,H), bias_ih_l<k>, bias_hh_l<k> (4H)) and
 * initialised U(+-1/sqrt(H)) in that order, so a checkpoint loads into
 * torch.nn.LSTM. The input projections of a whole layer are one sgemm over
 * all B*T rows; the recurrence one sgemm per step on strided rows of the
 * batch-first buffers. The caller owns the cache and the backward scratch
 * (dm_lstm_cache_numel / dm_lstm_scratch_numel floats), so both live in an
 * activation arena. Backward ADDS into every gradient. */
#ifndef DM_LSTM_H
#define DM_LSTM_H

#include "core/common.h"
#include "core/gru.h" /* dm_gru_dims / params / grads: the same shapes with 4H rows */

typedef dm_gru_dims dm_lstm_dims;
typedef dm_gru_params dm_lstm_params; /* w_ih (4H,I_l), w_hh (4H,H), b_ih, b_hh (4H) */
typedef dm_gru_grads dm_lstm_grads;

/* 0, or -1 naming the bad size (as dm_gru_dims_check, for 4H gates). */
int dm_lstm_dims_check(const dm_lstm_dims *d, dm_error *err);
/* Per layer: activated gates (B,T,4H), cell states c (B,T,H), outputs h
 * (B,T,H); L * B*T*6H floats. */
size_t dm_lstm_cache_numel(const dm_lstm_dims *d);
/* Gate gradients (B,T,4H), the layer below's output gradient (B,T,H), the
 * carried dh and dc (B,H each). */
size_t dm_lstm_scratch_numel(const dm_lstm_dims *d);

void dm_lstm_forward(float *out /* (B,T,H) */, float *cache /* (cache_numel) */,
                     const float *in /* (B,T,In) */, const dm_lstm_params *p, const dm_lstm_dims *d);
/* din may be NULL; every pointer in g must be set. scratch is overwritten. */
void dm_lstm_backward(float *din /* (B,T,In) acc, or NULL */, const dm_lstm_grads *g,
                      const float *dout /* (B,T,H) */, const float *cache, const float *in /* (B,T,In) */,
                      const dm_lstm_params *p, const dm_lstm_dims *d, float *scratch);

/* With opts (gru.h's dm_rnn_opts: h0 and c0, dropout between layers);
 * NULL: the plain ones. The backward must get the forward's opts. */
void dm_lstm_forward_opts(float *out /* (B,T,H) */, float *cache, const float *in /* (B,T,In) */,
                          const dm_lstm_params *p, const dm_lstm_dims *d, const dm_rnn_opts *o);
void dm_lstm_backward_opts(float *din /* (B,T,In) acc, or NULL */, const dm_lstm_grads *g,
                           const float *dout /* (B,T,H) */, const float *cache,
                           const float *in /* (B,T,In) */, const dm_lstm_params *p,
                           const dm_lstm_dims *d, float *scratch, const dm_rnn_opts *o);

#endif

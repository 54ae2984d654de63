/* episodic.h: the per-sequence episodic memory of the `reinforce` write
 * policy (README "RL write policy"), forward and backward.
 *
 * Where it sits: after the GRU. With h_t the top GRU output (B,T,H), which
 * depends on tokens <= t only,
 *   q_t = W_q h_t (Dk)                        read query
 *   e_t = sum_k w_tk v_k,  w_t = masked softmax over the FILLED slots of
 *         m_k exp(q_t . key_k / sqrt(Dk))     (m_k: the weight of the write
 *         that filled slot k: 1 for a hard write, p for a soft one)
 *   g_t = sigmoid(w_g . h_t + b_g)            learned scalar gate
 *   out_t = h_t + g_t e_t                     (B,T,H), what fc1 reads
 * and then, AFTER the read, the write decision of step t: when the write
 * weight wr_t > 0, key = W_k h_t (Dk) and value = W_v h_t (H) go into one
 * slot, chosen by a fixed rule: the lowest-index empty slot, else the least
 * recently used one (a slot is "used" at step t when it is written at t or
 * is the argmax of the read at t; ties go to the lowest index). So the read
 * at t sees exactly the writes of steps < t: nothing from the future.
 * Memory is empty at the start of every sequence; no filled slot -> e_t = 0.
 *
 * The gate is the learned gate between the two memories: the learned
 * (seed) memory's read enters the GRU as its input, so h_t carries it, and
 * g_t decides how much of the episodic read is added on top of it.
 * Keys and values are differentiable: later reads send gradient into W_k,
 * W_v and back into h_t (the GRU) at the step that wrote; the slot choice
 * and the hard write decision are not (the policy learns those by REINFORCE,
 * policy.h). In soft mode (curriculum) the write weights wr_t are the policy
 * probabilities and their gradient (dwr) is returned.
 *
 * Options (dims.cosine, dims.key_prev, below) change the score and what
 * the key is made from; with both off the memory is as described here.
 *
 * Storage for backward: instead of slot contents, the cache records for
 * every read (b,t) which step's key/value each slot held (src, -1 = empty),
 * so keys/values are the rows of the projections of all steps computed by
 * one sgemm each. Backward ACCUMULATES into dh, dwr and every parameter
 * gradient, as every layer of the core does. */
#ifndef DM_EPISODIC_H
#define DM_EPISODIC_H

#include "core/common.h"

typedef struct dm_episodic_dims {
    size_t B, T; /* batch, time */
    size_t H;    /* state width (top GRU output) = value width */
    size_t Dk;   /* key / query width */
    size_t K;    /* slots per sequence */
    /* Read and write options (0 = the original memory, so positional
     * initialisers that stop at K keep it):
     *   cosine    score = scale * cos(q_t, key_k) of the L2-normalised
     *             query and key, with a learned sharpness `scale`, instead
     *             of q . key / sqrt(Dk). A dot product of small projections
     *             gives near-uniform attention whose gradient into keys and
     *             queries is the difference of nearly equal values, so it
     *             stays flat; the normalised score keeps its range set by
     *             `scale` whatever the projections' size.
     *   key_prev  the key written at step t is W_k h_{t-1} (zero at t = 0),
     *             the value W_v h_t: at a value token the key carries the
     *             state of the key token before it, so the query of that
     *             key token later matches it directly (no need for h_t to
     *             hold two tokens at once).
     *   address_token  queries and keys are rows of two learned tables
     *             indexed by the step's token id (V rows of Dk each, in
     *             place of W_q and W_k): the address is the token alone,
     *             free of the history the state mixes in; values still
     *             project the state. With key_prev the key written at t
     *             is the row of token t-1. */
    int cosine, key_prev;
    int address_token;
    size_t V; /* token ids are < V; read only with address_token */
} dm_episodic_dims;

typedef struct dm_episodic_params {
    const float *w_q; /* (Dk,H) query projection, no bias; (V,Dk) table with address_token */
    const float *w_k; /* (Dk,H) key projection, no bias; (V,Dk) table with address_token */
    const float *w_v; /* (H,H) value projection, no bias */
    const float *w_g; /* (H) gate weights */
    const float *b_g; /* (1) gate bias */
    const float *scale; /* (1) the cosine read's sharpness; read only when dims.cosine */
    const int32_t *tokens; /* (B,T) ids in [0,V); read only with dims.address_token */
} dm_episodic_params;

typedef struct dm_episodic_grads {
    float *w_q; /* (Dk,H) acc */
    float *w_k; /* (Dk,H) acc */
    float *w_v; /* (H,H) acc */
    float *w_g; /* (H) acc */
    float *b_g; /* (1) acc */
    float *scale; /* (1) acc; used only when dims.cosine */
} dm_episodic_grads;

/* 0, or -1 naming the bad field (a zero size, a product that overflows, a
 * row count or K beyond int32). The kernels assume dims passed it. */
int dm_episodic_dims_check(const dm_episodic_dims *d, dm_error *err);

/* Floats of the forward cache: q, keys (N,Dk) each, values, reads (N,H)
 * each, gate (N), attention (N,K), and per read the max score and the
 * normaliser (N) each; N = B*T. With cosine, q and keys hold the unit
 * vectors and two more (N) hold the norms they were divided by. Last, N
 * int32 cells of the slots written (dm_episodic_written_slots). */
size_t dm_episodic_cache_numel(const dm_episodic_dims *d);
/* int32 entries of src: (B,T,K), the step whose write filled slot k when
 * step t read (-1: empty). */
size_t dm_episodic_src_numel(const dm_episodic_dims *d);
/* Floats of the backward scratch: dq, dkeys (N,Dk), dvalues (N,H). */
size_t dm_episodic_scratch_numel(const dm_episodic_dims *d);

/* Runs the read/write loop of every sequence. wr (B,T) are the write
 * weights: 0 = no write, > 0 = write with that weight (1 for a hard write,
 * p_t for a soft one). Writes out, cache and src. out must not alias h. */
void dm_episodic_forward(float *out /* (B,T,H) */, float *cache /* (cache_numel) */,
                         int32_t *src /* (B,T,K) */, const float *h /* (B,T,H) */,
                         const float *wr /* (B,T) */, const dm_episodic_params *p,
                         const dm_episodic_dims *d);

/* Backward of the matching forward (same h, wr, params). ADDS into dh
 * (may be NULL), dwr (may be NULL: the gradient w.r.t. the write weights,
 * meaningful in soft mode) and every pointer of g (all must be set).
 * scratch is overwritten. */
void dm_episodic_backward(float *dh /* (B,T,H) acc, or NULL */, float *dwr /* (B,T) acc, or NULL */,
                          const dm_episodic_grads *g, const float *dout /* (B,T,H) */,
                          const float *cache, const int32_t *src /* (B,T,K) */,
                          const float *h /* (B,T,H) */, const float *wr /* (B,T) */,
                          const dm_episodic_params *p, const dm_episodic_dims *d,
                          float *scratch /* (scratch_numel) */);

/* Views into the cache: the episodic read e (B,T,H), the gate g (B,T), the
 * attention weights over slots (B,T,K; 0 for empty slots). */
const float *dm_episodic_reads(const float *cache, const dm_episodic_dims *d);
const float *dm_episodic_gates(const float *cache, const dm_episodic_dims *d);
const float *dm_episodic_attention(const float *cache, const dm_episodic_dims *d);
/* The slot each step's write went into (B,T), -1 where it did not write:
 * what a write trace shows; backward does not read it. */
const int32_t *dm_episodic_written_slots(const float *cache, const dm_episodic_dims *d);

/* Mean over the batch of the fraction of the K slots that hold a write at
 * the end of the sequence (after the last step's write). */
double dm_episodic_slot_usage(const int32_t *src /* (B,T,K) */, const float *wr /* (B,T) */,
                              const dm_episodic_dims *d);

#endif

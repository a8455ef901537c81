"""model.remat: what a layer's backward pass keeps of its forward pass, as jax.checkpoint policies.

Everything not kept is recomputed in the backward pass: "full" keeps only each layer's input
(activation memory of one layer at a time, at the cost of a second forward pass), the "save_*"
policies keep the named intermediates (attention.py tags the projections with checkpoint_name)
or the matmul outputs, trading memory for less recomputation.
"""

from __future__ import annotations

import jax

_POLICIES = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "save_dots": jax.checkpoint_policies.checkpoint_dots,
    "save_dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "save_qkv_proj": jax.checkpoint_policies.save_only_these_names("q_proj", "k_proj", "v_proj"),
    "save_qkv_out_proj": jax.checkpoint_policies.save_only_these_names("q_proj", "k_proj", "v_proj", "out_proj"),
}


def rematerialised(fn, remat: str, in_scan: bool):
    """`fn` under the policy named `remat` (config.model.REMAT_POLICIES); unchanged for "none".

    in_scan: fn is a scan's body. XLA could otherwise merge the recomputation back into the
    forward pass (common-subexpression elimination) and keep everything; inside a scan it cannot,
    and the barriers that prevent it would only slow the step (jax.checkpoint's documentation)."""
    if remat == "none":
        return fn
    return jax.checkpoint(fn, policy=_POLICIES[remat], prevent_cse=not in_scan)

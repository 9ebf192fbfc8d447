"""ReFusion's meta-learning step as pure functions over parameter dicts (``torch.func``; digest §4).

``inner_update`` = one differentiable SGD step of F on P's loss (graph kept: second order) and one first-order SGD step
of R; ``meta_loss`` = reconstruction loss of R'(F'(x')) on the next batch, whose backward reaches P's parameters
through F' (Hessian-vector products); ``normalised_gradient_update_`` = the official P update
``p ← p − lr·grad / max|grad|``.

Speed / memory (issue 13; figures: benchmarks/refusion_speed.py → benchmarks/results/refusion_speed.json): the inner
gradient's derivative w.r.t. P's maps is computed by a forward-mode JVP of F in the outer backward
(``meta_gradient="jvp"``, :class:`_FusionGradient`) instead of a double backward through a stored backward graph of F.
Same values (tests/test_refusion_speed_memory.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp

from losses._amp import autocast_off
from losses.refusion import refusion_fusion_loss, refusion_reconstruction_loss
from networks.restormer import suspended_checkpointing


# --------------------------------------------------------------------------------------------------------------
# Meta-learning step (pure functions over parameter dicts)
# --------------------------------------------------------------------------------------------------------------
class InnerStep(NamedTuple):
    """Result of :func:`inner_update`.

    fusion_params: F' = F − lr·∇_F L_f, attached to the graph of P's parameters (second order); F's own
        weights enter detached, so a backward of :func:`meta_loss` fills only P's ``.grad``.
    reconstruction_params: R' = R − lr·∇_R L_r, detached (first order, as the official training code).
    fusion_loss: L_f on the meta-train batch (attached). reconstruction_loss: L_r of R on F(x) (detached).
    """

    fusion_params: dict[str, Tensor]
    reconstruction_params: dict[str, Tensor]
    fusion_loss: Tensor
    reconstruction_loss: Tensor


def _params(module: nn.Module, given: Mapping[str, Tensor] | None) -> dict[str, Tensor]:
    return dict(given) if given is not None else dict(module.named_parameters())


def _fp32(x: Tensor) -> Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _check_fusion_sources(sources: Tensor, who: str) -> None:
    if sources.ndim != 5 or sources.shape[1] != 2 or sources.shape[2] != 1:
        raise ValueError(
            f"{who}: sources must be N×2×1×H×W (Y of the two sources), got {tuple(sources.shape)}"
        )


class _FusionGradient(torch.autograd.Function):
    """``∇_θ L_f(F_θ(x); w, v)`` as a differentiable function of P's maps (w, v), with θ (F's weights) constant.

    forward: one ordinary first-order backward of F (no graph kept, so block checkpointing applies).
    backward: the cotangent ``u`` of ∇_θ L_f (from the outer loss through F' = θ − lr·∇_θ L_f) gives
    ``∂⟨u, ∇_θ L_f⟩/∂(w, v) = ∂⟨J_θ u, ∂L_f/∂F⟩/∂(w, v)``: ∇_θ L_f = J_θᵀ·∂L_f/∂F, and only ∂L_f/∂F depends on
    (w, v). ``J_θ u`` is one forward-mode JVP of F (:func:`torch.func.jvp`, no stored activations); the rest is a
    double backward of the elementwise loss only. Exactly the second-order meta-gradient of a double backward
    through F's backward graph (tests), without keeping that graph.
    """

    @staticmethod
    def forward(ctx: Any, w: Tensor, v: Tensor, fusion_net: nn.Module, names: tuple[str, ...],
                values: tuple[Tensor, ...], sources: Tensor, alpha_grad: float, squared_weights: bool) -> Any:
        with torch.enable_grad():
            leaves = [t.detach().requires_grad_(True) for t in values]
            fused = functional_call(fusion_net, dict(zip(names, leaves, strict=True)), (sources,))
            loss = refusion_fusion_loss(fused, sources, w.detach(), v.detach(), alpha_grad=alpha_grad,
                                        squared_weights=squared_weights)
            grads = torch.autograd.grad(loss, leaves, allow_unused=True)
        grads = tuple(torch.zeros_like(t) if g is None else g for g, t in zip(grads, values, strict=True))
        fused = fused.detach()
        ctx.save_for_backward(w.detach(), v.detach(), fused, sources)
        ctx.fusion_net, ctx.names, ctx.values = fusion_net, names, tuple(t.detach() for t in values)
        ctx.alpha_grad, ctx.squared_weights = alpha_grad, squared_weights
        ctx.mark_non_differentiable(fused)
        return (fused, *grads)

    @staticmethod
    def backward(ctx: Any, _fused_cotangent: Tensor, *u: Tensor) -> Any:
        w, v, fused, sources = ctx.saved_tensors
        net, names = ctx.fusion_net, ctx.names

        def f_of_params(*values: Tensor) -> Tensor:
            return functional_call(net, dict(zip(names, values, strict=True)), (sources,))

        with torch.no_grad():
            _, tangent = jvp(f_of_params, ctx.values, tuple(u))
        with torch.enable_grad():
            w_, v_, f_ = (t.detach().requires_grad_(True) for t in (w, v, fused))
            loss = refusion_fusion_loss(f_, sources, w_, v_, alpha_grad=ctx.alpha_grad,
                                        squared_weights=ctx.squared_weights)
            (d_fused,) = torch.autograd.grad(loss, f_, create_graph=True)
            gw, gv = torch.autograd.grad((d_fused * tangent).sum(), (w_, v_), allow_unused=True)
        gw = torch.zeros_like(w) if gw is None else gw
        gv = torch.zeros_like(v) if gv is None else gv
        return gw, gv, None, None, None, None, None, None


def inner_update(
    fusion_net: nn.Module,
    reconstruction_net: nn.Module,
    loss_proposal_net: nn.Module,
    sources: Tensor,
    lr: float,
    *,
    reconstruction_targets: Tensor | None = None,
    alpha_grad: float = 1.0,
    squared_weights: bool = True,
    loss_params: Mapping[str, Tensor] | None = None,
    fusion_params: Mapping[str, Tensor] | None = None,
    reconstruction_params: Mapping[str, Tensor] | None = None,
    meta_gradient: Literal["jvp", "double_backward"] = "jvp",
) -> InnerStep:
    """One virtual SGD step of F (differentiable, second order) and of R (first order) on a meta-train batch.

    ``F' = F − lr·∇_F L_f(F(x); P(x))`` with P's maps **not detached**, so F' is a function of P's parameters;
    ``R' = R − lr·∇_R L_r(R(F(x).detach()), targets)``, detached. The modules themselves are not modified
    (:func:`torch.func.functional_call`). Runs in fp32 with autocast off.

    Args:
        fusion_net, reconstruction_net, loss_proposal_net: F, R, P (plain modules, e.g. ``DDP.module``).
        sources: N×2×1×H×W meta-train batch (Y channels in [0, 1]).
        lr: the inner step size (official: F's current Adam learning rate).
        reconstruction_targets: N×2×1×H×W targets of R (default: ``sources``; with source swapping the un-swapped
            sources, so that R always outputs (A, B)).
        alpha_grad, squared_weights: passed to :func:`~losses.refusion.refusion_fusion_loss`.
        loss_params, fusion_params, reconstruction_params: parameter dicts to use instead of the modules' own
            (default ``dict(module.named_parameters())``), e.g. for a gradient check w.r.t. P. F's and R's
            weights are used detached in any case (only P's parameters stay in the graph).
        meta_gradient: how the outer backward differentiates ∇_F L_f w.r.t. P's maps (same values, tests):
            ``"jvp"`` (default): :class:`_FusionGradient`, the inner gradient is a first-order backward and its
            derivative one forward-mode JVP of F in the outer backward: F's backward graph is not kept, and block
            gradient checkpointing (:func:`set_gradient_checkpointing`) applies to F, P and R.
            ``"double_backward"``: the reference route, :func:`torch.func.grad` keeps F's backward graph for a
            double backward (~2× the memory; block checkpointing is suspended here: torch.func refuses its hooks).

    Returns:
        :class:`InnerStep`.
    """
    if meta_gradient not in ("jvp", "double_backward"):
        raise ValueError(f"meta_gradient must be 'jvp' or 'double_backward', got {meta_gradient!r}")
    _check_fusion_sources(sources, "inner_update")
    targets = sources if reconstruction_targets is None else reconstruction_targets
    if targets.shape != sources.shape:
        raise ValueError(
            f"reconstruction_targets {tuple(targets.shape)} must match sources {tuple(sources.shape)}"
        )
    device_type = sources.device.type
    with autocast_off(device_type):
        sources, targets = _fp32(sources), _fp32(targets)
        p_params = _params(loss_proposal_net, loss_params)
        # F's own weights enter as constants: the outer backward then reaches P only (not F's .grad);
        # P's meta-gradient is the same, since P acts on F' only through the inner gradient.
        f_params = {k: v.detach() for k, v in _params(fusion_net, fusion_params).items()}
        r_params = _params(reconstruction_net, reconstruction_params)

        if meta_gradient == "jvp":
            w, v = functional_call(loss_proposal_net, p_params, (sources,))
            names = tuple(f_params)
            fused, *g = _FusionGradient.apply(w, v, fusion_net, names, tuple(f_params[k] for k in names), sources,
                                              alpha_grad, squared_weights)
            f_grads = dict(zip(names, g, strict=True))
            l_f = refusion_fusion_loss(fused, sources, w, v, alpha_grad=alpha_grad, squared_weights=squared_weights)
        else:
            def fusion_objective(fp: dict[str, Tensor]) -> tuple[Tensor, tuple[Tensor, Tensor]]:
                fused = functional_call(fusion_net, fp, (sources,))
                w, v = functional_call(loss_proposal_net, p_params, (sources,))
                loss = refusion_fusion_loss(
                    fused, sources, w, v, alpha_grad=alpha_grad, squared_weights=squared_weights
                )
                return loss, (loss, fused)

            with suspended_checkpointing():
                f_grads, (l_f, fused) = grad(fusion_objective, has_aux=True)(f_params)
        new_f = {k: f_params[k] - lr * f_grads[k] for k in f_params}

        fused_in = fused.detach()
        r_leaves = {k: v.detach().requires_grad_(True) for k, v in r_params.items()}
        with torch.enable_grad():
            l_r = refusion_reconstruction_loss(functional_call(reconstruction_net, r_leaves, (fused_in,)), targets)
            r_grads = torch.autograd.grad(l_r, list(r_leaves.values()), allow_unused=True)
        new_r = {k: (r_leaves[k].detach() - lr * (0 if g is None else g)).detach()
                 for k, g in zip(r_leaves, r_grads, strict=True)}
    return InnerStep(new_f, new_r, l_f, l_r.detach())


def meta_loss(
    fusion_net: nn.Module,
    reconstruction_net: nn.Module,
    sources: Tensor,
    inner: InnerStep,
    *,
    reconstruction_targets: Tensor | None = None,
    source_reduction: Literal["max", "mean"] = "max",
) -> Tensor:
    """Outer objective: ``L_r(R'(F'(x')), x')`` on a meta-test batch, with F', R' from :func:`inner_update`.

    Differentiable w.r.t. P's parameters through F' (second order: its backward computes Hessian-vector products);
    the P update is then e.g. :func:`normalised_gradient_update_`. Runs in fp32 with autocast off.

    Args:
        fusion_net, reconstruction_net: the modules whose structure F', R' share.
        sources: N×2×1×H×W meta-test batch (the next batch in the official code).
        inner: the :class:`InnerStep` of the preceding meta-train batch.
        reconstruction_targets: default ``sources`` (see :func:`inner_update`).
        source_reduction: 'max' (code) or 'mean', see :func:`~losses.refusion.refusion_reconstruction_loss`.

    Returns:
        Scalar loss ≥ 0.
    """
    _check_fusion_sources(sources, "meta_loss")
    targets = sources if reconstruction_targets is None else reconstruction_targets
    if targets.shape != sources.shape:
        raise ValueError(
            f"reconstruction_targets {tuple(targets.shape)} must match sources {tuple(sources.shape)}"
        )
    with autocast_off(sources.device.type):
        sources, targets = _fp32(sources), _fp32(targets)
        fused = functional_call(fusion_net, inner.fusion_params, (sources,))
        recon = functional_call(reconstruction_net, inner.reconstruction_params, (fused,))
        return refusion_reconstruction_loss(recon, targets, source_reduction=source_reduction)


@torch.no_grad()
def normalised_gradient_update_(parameters: Iterable[nn.Parameter], lr: float) -> Tensor:
    """Official P update: ``p ← p − lr·grad / g_max``, g_max = max |grad| over all parameters (in place).

    Parameters without a gradient are skipped; returns g_max (0 → no update). SOURCE: training copy / TDFusion
    ``utils.py`` ``outer_update``.
    """
    parameters = list(parameters)
    params = [p for p in parameters if p.grad is not None]
    if not params:
        return torch.zeros((), device=parameters[0].device if parameters else None)
    g_max = torch.stack([p.grad.detach().abs().max() for p in params]).max()
    # no `if g_max > 0`: a host sync per step on a GPU; g_max = 0 means every gradient is 0 (no update either way)
    denominator = torch.where(g_max > 0, g_max, torch.ones_like(g_max))
    with torch.no_grad():
        for p in params:
            p.sub_(lr * p.grad / denominator)
    return g_max

"""Differentiable objectives shared by all papers: a function and an ``nn.Module`` per loss (kornia style); combined
objectives are built from the per-term modules and own their default weights. Shared helpers: :mod:`losses._common`."""

"""Differentiable objectives shared by all papers: a function and an ``nn.Module`` per loss (kornia style)."""

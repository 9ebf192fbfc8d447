"""Imaging code shared by the papers: colour conversions and normalisation (:mod:`imaging.colour`)."""

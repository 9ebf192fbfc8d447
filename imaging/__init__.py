"""Imaging code shared by the papers: colour conversions and normalisation (:mod:`imaging.colour`), filters
(:mod:`imaging.filters`), fusion source stacks (:mod:`imaging.stacks`), precision helpers (:mod:`imaging.precision`)."""

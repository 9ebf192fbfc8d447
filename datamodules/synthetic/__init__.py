"""Small datasets written in the real on-disk layouts from photos that scikit-image ships.

The demo and the tests run the real DataModules on them. Every generator is deterministic
given its seed.
"""

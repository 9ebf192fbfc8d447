"""Moved to :mod:`networks.tf_checkpoint` (re-exported here, where earlier code imports it from)."""

from networks.tf_checkpoint import *  # noqa: F403
from networks.tf_checkpoint import __all__  # noqa: F401

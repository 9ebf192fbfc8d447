"""The ``darkroom`` command and the configs it runs."""

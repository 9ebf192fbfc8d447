"""LightningDataModules reading each dataset's real on-disk layout, plus image I/O and synthetic data."""

"""Data: the AVE HDF5 layout, the pooled visual cache, synthetic AVE-format data, sub-events."""

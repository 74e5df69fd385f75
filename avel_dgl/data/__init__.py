"""Data: the AVE HDF5 layout file by file (ave), the pooled visual cache (cache), whole folders and
splits (dataset), synthetic AVE-format data (synthetic), sub-events (subevents)."""

"""The `avel-dgl` command line."""

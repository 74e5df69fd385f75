"""Neural network layers (RGCT, TCN) and the networks built from them (DPNet and its variants)."""

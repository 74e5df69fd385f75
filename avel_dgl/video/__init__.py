"""Videos in: decoding (decode.py), the VGGish audio network (vggish.py), the VGG19 pool5 visual
network and its Keras weights (vgg19.py), the published weight files (weights.py), and the AVE
feature recipe with resumable output (extract.py)."""

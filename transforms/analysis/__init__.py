"""Analysis of attributions (numpy only, no Beam, no TensorFlow): per-image summaries, distances between
distributions, region wording, and the skew rows."""

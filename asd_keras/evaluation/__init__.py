"""Official DCASE Task 2 metrics, submission/ground-truth file formats,
repeated-trial studies and explanation tools (compactness, RISE, t-SNE)."""

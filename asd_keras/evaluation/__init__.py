"""Official DCASE Task 2 metrics, submission/ground-truth file formats and
analysis tools (compactness statistics, RISE, embedding-space distances).

It depends on `data/` and `utils/` only, never on models or systems.
"""

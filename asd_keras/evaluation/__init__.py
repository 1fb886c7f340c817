"""Official DCASE Task 2 metrics and submission/ground-truth file formats."""

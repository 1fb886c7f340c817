"""Scoring backends: decision thresholds and Mahalanobis (MAHALA) scoring."""

"""Datasets: layouts, audio loading, tf.data pipelines, synthetic data, download."""

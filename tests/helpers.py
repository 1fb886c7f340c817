"""Assertions shared by the tests."""

import numpy as np


def assert_decisions_match(decisions, expected, scores, threshold, atol=1e-4):
    """Decisions agree, except for clips whose score is within `atol` of the threshold.

    Scores computed in another process or graph (a SavedModel) agree only to
    a float tolerance, so a clip that sits on the threshold may flip; every
    other clip must get the same decision.
    """
    decisions = np.asarray(decisions)
    expected = np.asarray(expected)
    scores = np.asarray(scores, dtype=float)
    threshold = np.broadcast_to(np.asarray(threshold, dtype=float), scores.shape)
    clear = np.abs(scores - threshold) > atol * np.maximum(1.0, np.abs(threshold))
    assert clear.any(), "every clip sits on the threshold; the test proves nothing"
    np.testing.assert_array_equal(decisions[clear], expected[clear])

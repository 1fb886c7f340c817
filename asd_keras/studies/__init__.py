"""Multi-stage paper studies built on the runs layer: `proxy` (Shin & Lee's
proxy-task study and its three-stage report)."""

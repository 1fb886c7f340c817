"""Runners: procedures that drive systems over data: repeated-trial studies
(`study`), hyper-parameter searches (`search`), per-machine-type comparisons
(`comparison`) and the representation probe (`probe`).

They sit above `systems/` and may use everything below it; `evaluation/`
(metrics and file formats) never imports them.
"""

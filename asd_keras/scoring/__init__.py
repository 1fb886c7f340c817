"""Score helpers: decision thresholds and the GAN detectors' score formulas."""

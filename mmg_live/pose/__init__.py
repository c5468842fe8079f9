"""Body pose derived from camera frames: one estimator for training data and live streams."""

"""Pixel statistics and accuracy: class counts and the confusion matrix with its metrics."""

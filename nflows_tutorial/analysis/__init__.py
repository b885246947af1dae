"""Using a trained flow: bits per dimension, the results table, speed, samples and interpolations."""

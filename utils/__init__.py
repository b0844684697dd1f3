"""Optimizers and schedules, checkpoint I/O, visualization, errors."""

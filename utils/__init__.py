"""Helpers only: checkpoint files, optimizers and schedules, image/video/PFM I/O, colour maps, the ray type, the error type."""

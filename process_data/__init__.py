"""Camera poses from photos (COLMAP structure-from-motion): the science behind imgs2poses.py."""

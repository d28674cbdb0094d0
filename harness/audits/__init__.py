"""Audits: single points of failure in the declared and the live cluster, and unexpected log lines."""

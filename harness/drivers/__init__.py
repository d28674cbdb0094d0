"""Cluster drivers: read and steer the cluster software (Pacemaker now; keepalived later)."""

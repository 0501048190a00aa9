"""Warming: runs of jobs, the background scheduler, snapshots, per-user preloads."""

"""Deployment: the production instance, the container image, the Helm values and the per-instance pool limits."""

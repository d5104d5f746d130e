"""Shipped trained weights (this folder installs as claricodec.shipped)."""

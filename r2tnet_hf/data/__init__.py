"""Data: readers now; manifests, shards, streaming and cohorts arrive with the data issue."""

from .io import FmriSeries, parcel_order_hash, read_series

__all__ = ["FmriSeries", "parcel_order_hash", "read_series"]

"""The archival run: plan slices, list, download, store, verify, write metadata, delete."""

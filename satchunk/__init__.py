"""The composition root: CLI, settings wiring, Dask cluster start-up and the demo."""

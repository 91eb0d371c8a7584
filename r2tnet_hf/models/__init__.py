"""One folder per model, transformers style."""

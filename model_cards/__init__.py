"""The Jinja templates of the auto-generated model cards, shipped as the package data of `r2tnet_hf.model_cards`."""

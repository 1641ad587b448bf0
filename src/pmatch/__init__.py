"""pmatch: keeps a product image-text matching model healthy in production."""

__version__ = "0.1.0"

"""The data contract for catalogues (Great Expectations)."""

"""Real FastAPI services built from the vendored v4 OpenAPI document, and the stand-in checked against them."""

"""Auth0's Management API v2 (`/api/v2/...`), on FastAPI, with Auth0's shapes and errors."""

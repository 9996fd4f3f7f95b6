"""The Telnyx API: client (session, rate limit, retries), pagination, models, errors."""

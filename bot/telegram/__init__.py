"""The Telegram face: routers, keyboards, texts, filters, middlewares and form
state. The only package with sentences a user reads."""

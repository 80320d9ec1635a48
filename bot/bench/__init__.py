"""The benchmark: the product beside the anti-patterns it replaces, driven
through the Telegram double (`python -m bot bench`)."""

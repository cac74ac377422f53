"""Fare policy (TOML, contract section 5) and the pure pricing of a card's service day."""

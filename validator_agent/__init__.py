"""The validator agent on the bus: reads cards, decides offline, spools and publishes taps."""

"""Stand-ins for hardware: virtual contactless cards on a real PC/SC stack, a simulated
GPS, and simulators of fleets and passengers."""

"""Tracking: GTFS network data, live vehicle positions, GTFS-Realtime and the map."""

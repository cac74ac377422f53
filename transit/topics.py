"""MQTT topic names of contract section 2, built from the configured prefix."""

from __future__ import annotations

import re
from dataclasses import dataclass

ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")


@dataclass(frozen=True)
class Topics:
    """Topic names under one prefix (default `transit/v1`)."""

    prefix: str = "transit/v1"

    def device(self, device_id: str, leaf: str) -> str:
        """`{prefix}/dev/{device_id}/{leaf}` for one device."""
        return f"{self.prefix}/dev/{device_id}/{leaf}"

    def tap(self, device_id: str) -> str:
        return self.device(device_id, "tap")

    def pos(self, device_id: str) -> str:
        return self.device(device_id, "pos")

    def receipt(self, device_id: str) -> str:
        return self.device(device_id, "receipt")

    def status(self, device_id: str) -> str:
        return self.device(device_id, "status")

    @property
    def denylist(self) -> str:
        return f"{self.prefix}/net/denylist"

    def all_devices(self, leaf: str, share_group: str = "") -> str:
        """Wildcard subscription for one leaf of every device, shared if a group is given."""
        topic = f"{self.prefix}/dev/+/{leaf}"
        return f"$share/{share_group}/{topic}" if share_group else topic

    def device_of(self, topic: str) -> str | None:
        """The device id in a device topic, or None if the topic is not one of ours."""
        head = f"{self.prefix}/dev/"
        if not topic.startswith(head):
            return None
        rest = topic[len(head):]
        device_id, sep, _leaf = rest.partition("/")
        if not sep or not ID_PATTERN.fullmatch(device_id):
            return None
        return device_id

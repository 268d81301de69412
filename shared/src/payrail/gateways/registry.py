"""Resolve gateway families by name.

Built-in gateways and third-party plugins both register through the ``payrail.gateways``
entry-point group (``name = "package.module:FamilyClass"``), so adding a gateway touches no
service code: install a package that declares the entry point and configure an account.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

from payrail.gateways.base import GatewayFamily

ENTRY_POINT_GROUP = "payrail.gateways"


class UnknownGateway(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown gateway {name!r}; known: {', '.join(available()) or 'none'}")
        self.name = name


@cache
def _families() -> dict[str, GatewayFamily]:
    found: dict[str, GatewayFamily] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        family_cls = ep.load()
        family = family_cls()
        if not isinstance(family, GatewayFamily):
            raise TypeError(f"entry point {ep.value} is not a GatewayFamily")
        found[ep.name] = family
    return found


def available() -> list[str]:
    """Names of every installed gateway, sorted."""
    return sorted(_families())


def get(name: str) -> GatewayFamily:
    """The family registered as ``name``; raises :class:`UnknownGateway`."""
    try:
        return _families()[name]
    except KeyError:
        raise UnknownGateway(name) from None

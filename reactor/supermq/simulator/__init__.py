"""A SuperMQ simulator: real HTTP on loopback, in-memory state, OpenAPI checks, faults on demand."""

from reactor.supermq.simulator.server import DEFAULT_PORTS, Simulator

__all__ = ["DEFAULT_PORTS", "Simulator"]

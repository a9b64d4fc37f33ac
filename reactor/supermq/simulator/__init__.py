"""A SuperMQ simulator: real HTTP on loopback, in-memory state, OpenAPI checks, faults on demand.

An optional extra (``pip install 'supermq-reactor[simulator]'``): only ``reactor demo`` and
``reactor simulate-supermq`` import it, when they run; without the extra, one clear error says so.
"""

from reactor.errors import ConfigError

try:
    import openapi_core  # noqa: F401
    import yaml  # noqa: F401
except ImportError as exc:
    raise ConfigError(
        "the SuperMQ simulator is an optional extra: pip install 'supermq-reactor[simulator]' "
        f"({exc.name} is not installed)"
    ) from exc

from reactor.supermq.simulator.server import DEFAULT_PORTS, Simulator

__all__ = ["DEFAULT_PORTS", "Simulator"]

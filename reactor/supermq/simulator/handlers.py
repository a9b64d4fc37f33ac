"""The simulator's endpoints: the shapes and status codes of SuperMQ's code (Magistrala v0.14.0).

One aiohttp application per service, each on its own port, as SuperMQ deploys them. Sources:
``bootstrap/api/transport.go``, ``things/api/http``, ``certs/api``, ``users/api`` and
``http/api`` at v0.14.0, as summarised in ``supermq-facts.md`` §2 and §4.
"""

from __future__ import annotations

from aiohttp import web

from reactor.supermq.simulator.api_bootstrap import BootstrapApi
from reactor.supermq.simulator.api_certs import CertsApi, HttpApi
from reactor.supermq.simulator.api_common import Handler, _Api, error
from reactor.supermq.simulator.api_head import ChannelsApi, ClientsApi, HeadUsersApi
from reactor.supermq.simulator.api_head_bootstrap import HeadBootstrapApi
from reactor.supermq.simulator.api_head_certs import HeadCertsApi, HeadHttpApi
from reactor.supermq.simulator.api_things import ThingsApi
from reactor.supermq.simulator.api_users import UsersApi
from reactor.supermq.simulator.state import State

__all__ = ["Handler", "error", "routes"]


#: SuperMQ HEAD's services (the clients profile): clients and channels in place of things.
HEAD_APIS: dict[str, type[_Api]] = {
    "users": HeadUsersApi,
    "clients": ClientsApi,
    "channels": ChannelsApi,
    "bootstrap": HeadBootstrapApi,
    "certs": HeadCertsApi,
    "http": HeadHttpApi,
}


def routes(service: str, state: State) -> list[web.RouteDef]:
    """The routes of one service of the era the state plays."""
    if state.profile == "clients":
        return HEAD_APIS[service](state).routes()
    apis: dict[str, type[_Api]] = {
        "users": UsersApi,
        "things": ThingsApi,
        "bootstrap": BootstrapApi,
        "certs": CertsApi,
        "http": HttpApi,
    }
    return apis[service](state).routes()

"""The test counterparty: a complete FIX 4.2/4.4 session layer with an order simulator.

Users point their FIX engine at ``fixsecure counterparty``; it logs on, answers orders with
ExecutionReports and exercises the session layer (heartbeats, gap recovery, Rejects, Logout) the
way QuickFIX does. Everything here is sans-IO; the network runner moves bytes and clock readings
in and carries out the returned actions.

- :mod:`~fixsecure.counterparty.engine` - :class:`Session`, one FIX session, and its actions;
- :mod:`~fixsecure.counterparty.store` - crash-safe :class:`FileStore` and :class:`MemoryStore`;
- :mod:`~fixsecure.counterparty.orders` - :class:`OrderSimulator` and :class:`Counterparty`;
- :mod:`~fixsecure.counterparty.fields` - tags, the fast parser/encoder, the small dictionary.
"""

from fixsecure.counterparty.engine import (
    Action,
    Deliver,
    Disconnect,
    LoggedOn,
    LoggedOut,
    Role,
    Send,
    Session,
    SessionConfig,
    SessionEvent,
    State,
)
from fixsecure.counterparty.fields import FixMessage, OutboundMessage
from fixsecure.counterparty.orders import Counterparty, OrderSimulator, SimulatorConfig
from fixsecure.counterparty.store import FileStore, MemoryStore, MessageStore, store_name

__all__ = [
    "Action",
    "Counterparty",
    "Deliver",
    "Disconnect",
    "FileStore",
    "FixMessage",
    "LoggedOn",
    "LoggedOut",
    "MemoryStore",
    "MessageStore",
    "OrderSimulator",
    "OutboundMessage",
    "Role",
    "Send",
    "Session",
    "SessionConfig",
    "SessionEvent",
    "SimulatorConfig",
    "State",
    "store_name",
]

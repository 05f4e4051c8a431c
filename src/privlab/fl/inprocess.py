"""An in-process Flower ``Grid``: the real ``ClientApp`` and ``ServerApp`` logic without Ray or a SuperLink.

Flower's simulation engine starts Ray (tens of seconds on a small machine); for fast tests and
for inspecting what the server receives, :class:`InProcessGrid` delivers each message by calling
the ``ClientApp`` directly with a ``Context`` whose ``node_config["partition-id"]`` names the client.
The strategy, its sampling, the DP wrappers and the SecAgg+ workflow are Flower's own, unchanged.

* ``drop(client, message_type)`` returning True drops that message silently (no reply): the
  server sees a client that vanished, and Flower's timeouts decide what happens.
* ``received`` keeps every reply the server got, so a test can check what it could see.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any
from uuid import uuid4

from privlab._validation import check_int
from privlab.errors import InvalidParameterError


def make_in_process_grid(
    client_app: Any,
    num_clients: int,
    *,
    drop: Callable[[int, str], bool] | None = None,
    record: bool = False,
) -> Any:
    """An :class:`InProcessGrid` instance (a ``flwr.serverapp.Grid``) over ``num_clients`` clients."""
    from flwr.app import Context, Error, Message, RecordDict
    from flwr.common.constant import SUPERLINK_NODE_ID
    from flwr.serverapp import Grid
    from flwr.supercore.run import Run
    from flwr.supercore.task_identity import TaskIdentity

    n = check_int(num_clients, "num_clients", "make_in_process_grid", low=1)

    class InProcessGrid(Grid):  # type: ignore[misc]
        """Delivers messages by calling ``client_app`` in this process; node ids are 1..num_clients."""

        def __init__(self) -> None:
            self._contexts = {
                i + 1: Context(run_id=1, node_id=i + 1, node_config={"partition-id": i}, state=RecordDict(),
                               run_config={})
                for i in range(n)
            }
            TaskIdentity.run_id = 1  # process-wide identity Flower's Message constructor reads
            TaskIdentity.node_id = SUPERLINK_NODE_ID
            TaskIdentity.task_id = 1
            self._run = Run.create_empty(1)
            self.received: list[Any] = []
            self._replies: dict[str, Any] = {}

        def set_run(self, run: Any) -> None:
            self._run = run

        @property
        def run(self) -> Any:
            return self._run

        def create_message(
            self, content: Any, message_type: str, dst_node_id: int, group_id: str, ttl: float | None = None
        ) -> Any:
            return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

        def get_node_ids(self) -> Iterable[int]:
            return list(self._contexts)

        def push_messages(self, messages: Iterable[Any]) -> Iterable[str]:
            ids = []
            for msg in messages:
                node = int(msg.metadata.dst_node_id)
                if node not in self._contexts:
                    raise InvalidParameterError(f"Message to unknown node {node}; nodes are 1..{n}.")
                msg.metadata.__dict__["_message_id"] = mid = str(uuid4())
                ids.append(mid)
                client = node - 1
                if drop is not None and drop(client, str(msg.metadata.message_type)):
                    continue
                TaskIdentity.node_id = node
                try:
                    # a real transport serialises each message: the client gets its own copy
                    reply = client_app(copy.deepcopy(msg), self._contexts[node])
                except Exception as exc:  # a failing client answers with an error, as a SuperNode does
                    reply = Message(Error(code=0, reason=repr(exc)), reply_to=msg)
                finally:
                    TaskIdentity.node_id = SUPERLINK_NODE_ID
                self._replies[mid] = reply
            return ids

        def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Any]:
            out = [copy.deepcopy(self._replies.pop(i)) for i in list(message_ids) if i in self._replies]
            if record:
                self.received.extend(out)
            return out

        def send_and_receive(self, messages: Iterable[Any], *, timeout: float | None = None) -> Iterable[Any]:
            return list(self.pull_messages(self.push_messages(messages)))

    return InProcessGrid()


def blank_context() -> Any:
    """A ServerApp ``Context`` for calling a server body directly on an in-process grid."""
    from flwr.app import Context, RecordDict

    return Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={})

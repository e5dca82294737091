"""Errors of the operator shell (the ``flowforge`` command).

The tree::

    FlowForgeError (flowforge.core.errors)
    +-- TopicMissing               `flowforge topics`, `tail` or `dlq replay` names a topic the
                                   cluster does not have (not retriable)

Every other error a command meets comes from the layers below; `flowforge` prints any
FlowForgeError as one line and exits 1.
"""

from __future__ import annotations

from flowforge.core.errors import FlowForgeError


class TopicMissing(FlowForgeError):
    """The topic does not exist on the cluster."""

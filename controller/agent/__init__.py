"""The node agent's logic, free of Kubernetes: snapshot keeping and coalescing
(`node_agent`), the push loop to the speaker (`push`), and the BGPNodeState/Event decisions
(`node_status`). controller.kube.node_watch feeds it from kopf."""
